"""Which platforms the real network reproduces, and with what numbers.

Supported: *star/backbone* platforms. Every route between two hosts of the scenario must cross

    private links of the source  +  the shared core links  +  private links of the destination

where a host's private links are the links found in every route of that host and in no route of
other pairs, and the core links are found in every route. ``two_hosts.xml`` (one link, the core) and
``four_hosts_backbone.xml`` (``lN`` private, ``backbone`` the core) fit; so does any platform whose
scenario uses only two hosts (the whole route is then the core). Anything else (routes through links
that only some pairs share, missing routes, FATPIPE or SPLITDUPLEX core links) is refused with the
route that does not fit.

The real network then has, for host ``h``: a private rate ``min(bandwidth of its private links)``
shaped in each direction separately (full duplex, where SimGrid's SHARED private link is shared by
both directions); one core rate ``min(bandwidth of the core links)`` shared by every packet of every
pair in both directions (like SimGrid's SHARED links); and, per ordered pair, a one-way delay equal to
the sum of the latencies of its route.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..scenario import PlatformInfo


class TopologyError(ValueError):
    pass


@dataclass
class Topology:
    hosts: list[str]                       # the scenario's hosts, platform order
    ips: dict[str, str]
    private_links: dict[str, list[str]]
    private_bw: dict[str, float | None]    # bytes/s, None: no private link
    core_links: list[str]
    core_bw: float | None
    latency: dict[tuple[str, str], float]  # one-way route latency (s), per ordered pair of hosts

    def describe(self) -> dict:
        return {
            "hosts": {h: {"ip": self.ips[h], "private_links": self.private_links[h],
                          "private_bandwidth": self.private_bw[h]} for h in self.hosts},
            "core_links": self.core_links, "core_bandwidth": self.core_bw,
            "latency": {f"{a}->{b}": lat for (a, b), lat in sorted(self.latency.items())},
        }


def _route(platform: PlatformInfo, a: str, b: str) -> tuple[str, ...] | None:
    for r in platform.routes:
        if (r.src, r.dst) == (a, b):
            return r.links
    for r in platform.routes:
        if (r.src, r.dst) == (b, a) and r.symmetrical:
            return tuple(reversed(r.links))
    return None


def build_topology(platform: PlatformInfo, hosts_used: list[str]) -> Topology:
    """The real-network description of ``platform`` restricted to ``hosts_used``; TopologyError if the
    routes between those hosts are not of the supported star/backbone form."""
    hosts = [h.name for h in platform.hosts if h.name in set(hosts_used)]
    links = {link.name: link for link in platform.links}
    routes: dict[tuple[str, str], tuple[str, ...]] = {}
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            r = _route(platform, a, b)
            if r is None:
                raise TopologyError(f"no route between hosts '{a}' and '{b}' in {platform.path} "
                                    "(the real run supports star/backbone platforms with explicit routes)")
            routes[(a, b)] = r
    all_sets = [set(r) for r in routes.values()]
    core = set.intersection(*all_sets) if all_sets else set()
    private: dict[str, set[str]] = {}
    for h in hosts:
        touching = [set(r) - core for (a, b), r in routes.items() if h in (a, b)]
        others = [set(r) for (a, b), r in routes.items() if h not in (a, b)]
        mine = set.intersection(*touching) if touching else set()
        for o in others:
            mine -= o
        private[h] = mine
    for (a, b), r in routes.items():
        expected = private[a] | core | private[b]
        if set(r) != expected or len(r) != len(set(r)):
            raise TopologyError(
                f"route {a} -> {b} crosses links [{', '.join(r)}], which is not '{a}''s own links + the "
                f"shared core [{', '.join(sorted(core))}] + '{b}''s own links: the real run supports only "
                "star/backbone platforms (docs/compare.md)")
    for name in core:
        policy = links[name].sharing_policy.upper()
        if policy != "SHARED":
            raise TopologyError(f"core link '{name}' has sharing_policy {policy}: the real run shares core "
                                "links between all flows in both directions (SHARED only)")
    for h in hosts:
        for name in private[h]:
            if links[name].sharing_policy.upper() == "FATPIPE":
                raise TopologyError(f"link '{name}' has sharing_policy FATPIPE, which the real run cannot shape")

    def order(names: set[str], route: tuple[str, ...]) -> list[str]:
        return [n for n in route if n in names]

    any_route = next(iter(routes.values()), ())
    private_links = {}
    for h in hosts:
        r = next((r for (a, b), r in routes.items() if h in (a, b)), ())
        private_links[h] = order(private[h], r)
    latency: dict[tuple[str, str], float] = {}
    for (a, b), r in routes.items():
        lat = sum(links[n].latency for n in r)
        latency[(a, b)] = latency[(b, a)] = lat
    return Topology(
        hosts=hosts,
        ips={h: platform.host(h).ip for h in hosts},
        private_links=private_links,
        private_bw={h: min((links[n].bandwidth for n in private[h]), default=None) for h in hosts},
        core_links=order(core, any_route),
        core_bw=min((links[n].bandwidth for n in core), default=None),
        latency=latency,
    )
