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

from ..scenario import LinkInfo, PlatformInfo


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


SimgridRoutes = dict[tuple[str, str], "list | None"]  # what simterpose.sim.predict.predict_routes answers


def _from_simgrid(platform: PlatformInfo, links: dict[str, LinkInfo], route: list) -> tuple[str, ...]:
    """A SimGrid route as link names of ``links``: a split-duplex link's X_UP / X_DOWN halves are X
    (the real network shapes each direction of a private link separately anyway); a link the XML
    does not name (none expected) is added with SimGrid's numbers."""
    names = []
    for name, bandwidth, latency, policy in route:
        for half in ("_UP", "_DOWN"):
            if name.endswith(half) and name[: -len(half)] in links:
                name = name[: -len(half)]
        if name not in links:
            links[name] = LinkInfo(name, float(bandwidth), float(latency), policy if policy != "?" else "SHARED",
                                   0)
        names.append(name)
    return tuple(names)


def _split_duplex_owners(simgrid_routes: SimgridRoutes, hosts: list[str]) -> dict[str, str]:
    """Split-duplex links that belong to one host: their _UP half is only in routes leaving it and
    their _DOWN half only in routes reaching it (a cluster's or cabinet's per-host links). Tells a
    host's own link from the core even when the scenario uses only two hosts."""
    ends: dict[str, set[str]] = {}
    for (a, b), route in simgrid_routes.items():
        if route is None or a not in hosts or b not in hosts:
            continue
        for name, *_ in route:
            if name.endswith("_UP"):
                ends.setdefault(name[:-3], set()).add(a)
            elif name.endswith("_DOWN"):
                ends.setdefault(name[:-5], set()).add(b)
    return {link: next(iter(owners)) for link, owners in ends.items() if len(owners) == 1}


def build_topology(platform: PlatformInfo, hosts_used: list[str],
                   simgrid_routes: SimgridRoutes | None = None) -> Topology:
    """The real-network description of ``platform`` restricted to ``hosts_used``; TopologyError if the
    routes between those hosts are not of the supported star/backbone form.

    ``simgrid_routes``: the routes as SimGrid built them (:func:`simterpose.sim.predict.predict_routes`),
    which covers implicit routes (clusters, cabinets); without it, the XML's explicit routes."""
    hosts = [h.name for h in platform.hosts if h.name in set(hosts_used)]
    links = {link.name: link for link in platform.links}
    routes: dict[tuple[str, str], tuple[str, ...]] = {}
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            if simgrid_routes is not None:
                found = simgrid_routes.get((a, b))
                r = None if found is None else _from_simgrid(platform, links, found)
            else:
                r = _route(platform, a, b)
            if r is None:
                raise TopologyError(f"no route between hosts '{a}' and '{b}' in {platform.path}")
            routes[(a, b)] = r
    owned = _split_duplex_owners(simgrid_routes, hosts) if simgrid_routes is not None else {}
    all_sets = [set(r) for r in routes.values()]
    core = (set.intersection(*all_sets) if all_sets else set()) - set(owned)
    private: dict[str, set[str]] = {}
    for h in hosts:
        touching = [set(r) - core for (a, b), r in routes.items() if h in (a, b)]
        others = [set(r) for (a, b), r in routes.items() if h not in (a, b)]
        mine = set.intersection(*touching) if touching else set()
        for o in others:
            mine -= o
        private[h] = (mine - set(owned)) | {link for link, owner in owned.items() if owner == h}
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
