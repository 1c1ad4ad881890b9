"""Hosts' IPv6 addresses (`<prop id="ip6">`, ipv6(7)) as simterpose/net/addressing.py resolves them."""

import pytest

from simterpose.net.addressing import AddressError, Addressing

HOSTS = [("h1", "10.0.0.1"), ("h2", "10.0.0.2"), ("h3", "10.0.0.3")]


def addressing():
    a = Addressing(HOSTS, run_octet=2, ip6={"h1": "fd00:0::1", "h2": "fd00::2"})
    a.reachable = lambda src, dst: True
    return a


def test_an_ipv6_destination_names_its_host_in_canonical_form():
    a = addressing()
    h3 = a.host("h3")
    assert a.host("h1").ip6 == "fd00::1" and h3.ip6 is None
    host, ip = a.destination(h3, "fd00:0:0::2")
    assert (host.name, ip) == ("h2", "fd00::2")
    assert a.destination(h3, "::1") == (h3, "127.0.0.1")   # loopback: the caller's own host
    with pytest.raises(AddressError) as e:
        a.destination(h3, "fd00::9")
    assert e.value.errno == 101   # ENETUNREACH


def test_a_host_binds_its_own_ipv6_address_only():
    a = addressing()
    assert a.local_virtual(a.host("h1"), "fd00::1") == "fd00::1"
    with pytest.raises(AddressError) as e:
        a.local_virtual(a.host("h2"), "fd00::1")
    assert e.value.errno == 99    # EADDRNOTAVAIL


@pytest.mark.parametrize("bad", ["::ffff:10.0.0.1", "::1", "::", "not-an-address"])
def test_an_ip6_property_must_be_a_plain_ipv6_address(bad):
    with pytest.raises(ValueError):
        Addressing(HOSTS, run_octet=2, ip6={"h1": bad})


def test_a_platform_with_a_bad_ip6_is_refused_with_its_line(tmp_path):
    from pathlib import Path

    from simterpose.scenario import ScenarioError, load_platform_info

    good = Path(__file__).resolve().parents[2] / "examples" / "platforms" / "two_hosts_ipv6.xml"
    assert [h.props["ip6"] for h in load_platform_info(good).hosts] == ["fd00::1", "fd00::2"]
    bad = tmp_path / "bad.xml"
    bad.write_text(good.read_text().replace("fd00::2", "::ffff:10.0.0.9"))
    with pytest.raises(ScenarioError, match="host 'h2': invalid ip6 property"):
        load_platform_info(bad)
    bad.write_text(good.read_text().replace("fd00::2", "fd00::1"))
    with pytest.raises(ScenarioError, match="ip6 fd00::1 already belongs to host 'h1'"):
        load_platform_info(bad)
