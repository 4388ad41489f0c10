from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import (
    ALB,
    HAPROXY,
    KUBERNETES,
    NGINX,
    SCALES,
    WeightScale,
    check_weight,
    get_scale,
    group_weights,
    observed_split,
    server_weights,
)


def names(prefix, count):
    return [f"{prefix}{i}" for i in range(count)]


def test_three_stable_one_canary_at_ten_percent_haproxy():
    weights = server_weights(10, ["s1", "s2", "s3"], ["c1"], HAPROXY)
    assert weights == {"s1": 256, "s2": 256, "s3": 256, "c1": 85}
    assert abs(observed_split(weights, ["c1"]) - 10) < 0.1


def test_provider_by_name():
    assert server_weights(10, ["s1"], ["c1"], "haproxy") == server_weights(10, ["s1"], ["c1"], HAPROXY)
    assert get_scale("nginx") is NGINX
    assert set(SCALES) == {"haproxy", "nginx", "alb", "kubernetes"}
    with pytest.raises(TrafficSpecError, match="provider: expected one of alb, haproxy, kubernetes, nginx"):
        get_scale("f5")


def test_group_weights():
    assert group_weights(10, ALB) == {"stable": 999, "canary": 111}
    assert group_weights(10, KUBERNETES) == {"stable": 1_000_000, "canary": 111_111}
    assert group_weights(0, ALB) == {"stable": 999, "canary": 0}
    assert group_weights(100, ALB) == {"stable": 0, "canary": 999}
    assert group_weights(50, "kubernetes", stable="blue", canary="green") == {"blue": 1_000_000, "green": 1_000_000}


def test_ends_of_the_range():
    assert server_weights(0, ["s1", "s2"], ["c1"], HAPROXY) == {"s1": 256, "s2": 256, "c1": 0}
    assert server_weights(100, ["s1", "s2"], ["c1"], HAPROXY) == {"s1": 0, "s2": 0, "c1": 256}
    # an empty set is fine when it receives nothing
    assert server_weights(0, ["s1"], [], HAPROXY) == {"s1": 256}
    assert server_weights(100, [], ["c1"], NGINX) == {"c1": 100}


def test_deterministic_and_remainder_goes_first():
    weights = server_weights(50, names("s", 3), names("c", 2), WeightScale("tiny", 4))
    assert weights == server_weights(50, names("s", 3), names("c", 2), WeightScale("tiny", 4))
    stable = [weights[n] for n in names("s", 3)]
    assert max(stable) - min(stable) <= 1
    assert stable == sorted(stable, reverse=True)


@pytest.mark.parametrize("scale", [HAPROXY, NGINX, ALB, KUBERNETES], ids=lambda s: s.provider)
def test_property_within_limits_and_close_for_1_to_100_servers(scale):
    """For every server count 1..100 (split between the sets) and canary percentages 0..100, weights stay in
    range, each set is spread evenly, and the observed split is within 1 percentage point of the target."""
    percents = [0, 1, 2.5, 5, 10, 25, 33, 50, 66.6, 75, 90, 99, 100]
    for total in range(2, 101):
        for canaries in sorted({1, total // 4 or 1, total // 2, total - 1}):
            stable, canary = names("s", total - canaries), names("c", canaries)
            for percent in percents:
                weights = server_weights(percent, stable, canary, scale)
                assert set(weights) == set(stable) | set(canary)
                assert all(0 <= w <= scale.max_weight for w in weights.values())
                for members in (stable, canary):
                    values = [weights[n] for n in members]
                    assert max(values) - min(values) <= 1, (total, canaries, percent)
                assert abs(observed_split(weights, canary) - percent) <= 1.0, (total, canaries, percent, weights)
                if percent == 0:
                    assert all(weights[n] == 0 for n in canary)
                if percent == 100:
                    assert all(weights[n] == 0 for n in stable)


def test_property_single_server_sets_are_exact_to_a_tenth():
    for percent in range(101):
        weights = server_weights(percent, ["s"], ["c"], HAPROXY)
        assert abs(observed_split(weights, ["c"]) - percent) < 0.2
        assert max(weights.values()) >= 255  # the total is as large as the maximum allows


def test_tiny_share_on_many_servers_keeps_the_split_accurate():
    weights = server_weights(1, ["s"], names("c", 100), HAPROXY)
    assert abs(observed_split(weights, names("c", 100)) - 1) <= 1
    assert weights["s"] >= 255


@pytest.mark.parametrize(
    ("args", "param", "text"),
    [
        ((10, ["s"], [], HAPROXY), "canary", "canary set is empty"),
        ((10, [], ["c"], HAPROXY), "stable", "stable set is empty"),
        ((10, ["a", "b"], ["b"], HAPROXY), "canary", "in both"),
        ((10, ["a", "a"], ["c"], HAPROXY), "stable[1]", "listed twice"),
        ((10, "s1", ["c"], HAPROXY), "stable", "expected a list"),
        ((10, ["s", ""], ["c"], HAPROXY), "stable[1]", "non-empty server name"),
        ((101, ["s"], ["c"], HAPROXY), "canary_percent", "between 0 and 100"),
        ((-1, ["s"], ["c"], HAPROXY), "canary_percent", "between 0 and 100"),
    ],
)
def test_bad_input(args, param, text):
    with pytest.raises(TrafficSpecError) as exc:
        server_weights(*args)
    assert exc.value.param == param
    assert text in exc.value.message


def test_observed_split():
    assert observed_split({"a": 90, "b": 10}, ["b"]) == 10.0
    assert observed_split({"a": 0, "b": 5}, ["b"]) == 100.0
    assert observed_split({"a": 1, "b": 1, "c": 2}, []) == 0.0


@pytest.mark.parametrize(
    ("weights", "canary", "param", "text"),
    [
        ({"a": 0, "b": 0}, ["b"], "weights", "every weight is 0"),
        ({"a": 1}, ["b"], "canary", "b have no weight"),
        ({"a": -1, "b": 1}, ["b"], "weights.a", "integer weight"),
        ({"a": 1.5, "b": 1}, ["b"], "weights.a", "integer weight"),
    ],
)
def test_observed_split_bad_input(weights, canary, param, text):
    with pytest.raises(TrafficSpecError) as exc:
        observed_split(weights, canary)
    assert exc.value.param == param
    assert text in exc.value.message


def test_check_weight():
    assert check_weight(256, "haproxy", "w") == 256
    assert check_weight(0, ALB, "w") == 0
    for bad in (257, -1, 1.0, True, "5"):
        with pytest.raises(TrafficSpecError, match=r"app/s1\.weight: expected an integer weight between 0 and 256"):
            check_weight(bad, HAPROXY, "app/s1.weight")
    with pytest.raises(TrafficSpecError, match="between 0 and 999 for alb"):
        check_weight(1000, ALB, "w")
