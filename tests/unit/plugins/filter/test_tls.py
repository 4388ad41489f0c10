from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.strata.deploy.plugins.filter.tls import FilterModule, tls_profile

MOZILLA_INTERMEDIATE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
TLS13 = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


def test_intermediate_is_mozilla_5_7() -> None:
    profile = tls_profile("intermediate")
    assert profile["protocols"] == ["TLSv1.2", "TLSv1.3"]
    assert profile["min_version"] == "TLSv1.2"
    assert profile["ciphers"] == MOZILLA_INTERMEDIATE
    assert profile["ciphersuites"] == TLS13
    assert profile["prefer_server_ciphers"] is False
    assert profile["hsts"] is True


def test_modern_is_tls13_only() -> None:
    profile = tls_profile("modern")
    assert profile["protocols"] == ["TLSv1.3"]
    assert profile["min_version"] == "TLSv1.3"
    assert profile["ciphersuites"] == TLS13
    assert profile["prefer_server_ciphers"] is False
    assert profile["hsts"] is True


@pytest.mark.parametrize("name", ["intermediate", "modern"])
def test_every_profile_has_the_same_keys(name: str) -> None:
    assert set(tls_profile(name)) == {
        "name",
        "protocols",
        "min_version",
        "ciphers",
        "ciphersuites",
        "prefer_server_ciphers",
        "hsts",
    }


def test_intermediate_excludes_cbc_and_rsa_key_exchange() -> None:
    ciphers = tls_profile("intermediate")["ciphers"].split(":")
    assert "AES128-SHA" not in ciphers
    assert all(c.startswith(("ECDHE-", "DHE-")) for c in ciphers)
    assert not any("CBC" in c or c.endswith("-SHA") for c in ciphers)


def test_result_is_a_copy() -> None:
    tls_profile("intermediate")["protocols"].append("TLSv1.1")
    assert tls_profile("intermediate")["protocols"] == ["TLSv1.2", "TLSv1.3"]


@pytest.mark.parametrize("name", ["old", "Intermediate", "", None, 3])
def test_unknown_profile_names_it_and_the_choices(name: object) -> None:
    with pytest.raises(AnsibleFilterError) as err:
        tls_profile(name)
    assert repr(name) in str(err.value)
    assert "intermediate, modern" in str(err.value)


def test_filter_is_registered() -> None:
    assert FilterModule().filters()["tls_profile"] is tls_profile
