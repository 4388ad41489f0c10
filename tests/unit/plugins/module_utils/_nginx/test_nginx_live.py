"""The nginx client against a real nginx 1.22 started by the ``nginx`` fixture (tests/unit/conftest.py).

nginx runs one worker with a shared zone, so its smooth weighted round-robin is exact: 200 requests over
weights 3:1 give 150:50. The assertions still leave a margin.
"""

from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._nginx.client import (
    NginxClient,
    NginxConfigError,
    parse_upstreams,
    upstreams_from_spec,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import ServerState
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import (
    NGINX,
    observed_split,
    server_weights,
)

REQUESTS = 200


@pytest.fixture
def client(nginx):
    return NginxClient(
        str(nginx.upstream_file),
        test_command=nginx.test_command,
        reload_command=nginx.reload_command,
        timeout=20,
        run=nginx.run,
    )


def converge_and_wait(nginx, client, desired):
    old_workers = nginx.workers()
    result = client.converge(desired)
    nginx.wait_reloaded(old_workers)
    return result


def test_fixture_serves_round_robin(nginx, client):
    assert nginx.hits(30) == {"a": 10, "b": 10, "c": 10}
    assert client.current_state() == {"app": {nginx.address(n): ServerState(1) for n in "abc"}}


def test_weights_change_the_split_with_one_reload(nginx, client):
    desired = {"app": {nginx.address("a"): {"weight": 3}, nginx.address("b"): {"weight": 1},
                       nginx.address("c"): {"weight": 0}}}  # fmt: skip
    result = converge_and_wait(nginx, client, desired)

    assert result.changed and len(result.changes) == 2  # b already has weight 1
    assert [call[-2:] for call in nginx.calls] == [[str(nginx.conf), "-t"], ["-s", "reload"]], "one test, one reload"
    assert result.reload_seconds is not None and 0 <= result.reload_seconds < 5
    seen = nginx.hits(REQUESTS)
    assert sum(seen.values()) == REQUESTS
    assert seen["c"] == 0, "a server at weight 0 (`down`) gets no request"
    assert 130 <= seen["a"] <= 170 and 30 <= seen["b"] <= 70, seen

    again = client.converge(desired)
    assert not again.changed and len(nginx.calls) == 2, "a second run changes nothing and does not reload"


def test_canary_percentage_end_to_end(nginx, client):
    stable, canary = [nginx.address("a"), nginx.address("b")], [nginx.address("c")]
    weights = server_weights(10, stable, canary, NGINX)
    assert round(observed_split(weights, canary)) == 10
    converge_and_wait(nginx, client, {"app": {address: {"weight": w} for address, w in weights.items()}})
    seen = nginx.hits(REQUESTS)
    assert 10 <= seen["c"] <= 30, seen  # 10% of 200 = 20
    assert seen["a"] + seen["b"] + seen["c"] == REQUESTS


def test_down_server_gets_nothing_and_comes_back(nginx, client):
    converge_and_wait(nginx, client, {"app": {nginx.address("b"): {"state": "maint"}}})
    assert "weight=1 down;" in nginx.upstream_file.read_text()
    seen = nginx.hits(60)
    assert seen["b"] == 0 and seen["a"] + seen["c"] == 60
    converge_and_wait(nginx, client, {"app": {nginx.address("b"): {"state": "ready"}}})
    assert nginx.hits(30)["b"] == 10


def test_a_file_that_fails_nginx_t_is_rolled_back_and_nginx_keeps_serving(nginx, client):
    before = nginx.upstream_file.read_text()
    workers = nginx.workers()
    bad = upstreams_from_spec([{"name": "app", "servers": [{"address": "127.0.0.1:99999"}]}])  # invalid port

    with pytest.raises(NginxConfigError) as exc:
        client.write_upstreams(bad)

    assert "invalid port" in str(exc.value) and "previous file was restored" in str(exc.value)
    assert nginx.upstream_file.read_text() == before
    assert not [call for call in nginx.calls if "reload" in call], "nothing was reloaded"
    assert nginx.workers() == workers
    assert nginx.hits(30) == {"a": 10, "b": 10, "c": 10}


def test_write_upstreams_renders_a_file_nginx_accepts(nginx, client):
    spec = [
        {
            "name": "app",
            "servers": [
                {"address": nginx.address("a"), "weight": 1, "max_fails": 3, "fail_timeout": "5s"},
                {"address": nginx.address("b"), "weight": 0},
                {"address": nginx.address("c"), "weight": 1, "state": "maint"},
            ],
        }
    ]
    old_workers = nginx.workers()
    result = client.write_upstreams(upstreams_from_spec(spec))
    nginx.wait_reloaded(old_workers)
    assert result.changed and result.reload_seconds is not None
    assert parse_upstreams(nginx.upstream_file.read_text()) == upstreams_from_spec(spec)
    assert nginx.hits(20) == {"a": 20}
