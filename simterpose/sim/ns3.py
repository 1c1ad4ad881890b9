"""What SimGrid's ns-3 network model needs from a platform, checked before SimGrid sees it.

Pure Python (no simgrid import): it reads the platform as :func:`simterpose.scenario.load_platform_info`
parsed it. Sources: SimGrid's documentation, "ns-3 as a SimGrid model" (docs/source/ns3.rst), and
its binding (src/surf/network_ns3.cpp in 3.32, src/kernel/resource/models/network_ns3.cpp later):

* SimGrid builds the ns-3 network from the platform's routes of exactly ONE link (a point-to-point
  link each, both ways); longer routes are ignored and ns-3 routes packets itself over the
  point-to-point links (shortest path, ``Ipv4GlobalRoutingHelper``). Hosts joined only by longer
  routes cannot talk: a transfer between them hangs or aborts ("Element ... is unknown to ns-3").
* A link with a WIFI sharing policy aborts ("The wifi sharing policy is not supported for links");
  ns-3 models Wi-Fi zones itself (``access_point``, ``mcs``, ``nss`` properties), which this
  emulator does not drive. Only flat ``<cluster>``\\ s are built (a CSMA backbone); ``<cluster>`` and
  ``<cabinet>`` (implicit routes) are refused here.
* ``ns3/TcpModel`` accepts ``default`` and ``NewReno`` with the ns-3 3.37 Debian 12 links
  (``Reno`` and ``Tahoe`` no longer exist in ns-3 and crash the process).

Every refusal is an :class:`Ns3PlatformError` naming the element and its line.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

TCP_MODELS = ("default", "NewReno")


class Ns3PlatformError(ValueError):
    """The platform (or a setting) cannot be simulated with SimGrid's ns-3 model."""


@dataclass
class Ns3Topology:
    """The network ns-3 will build: point-to-point links from the platform's one-link routes."""

    # netpoint -> [(neighbour, latency of the link between them)], in platform order
    edges: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    long_routes: dict[tuple[str, str], int] = field(default_factory=dict)  # (src, dst) -> link count
    _paths: dict[str, dict[str, tuple[int, float]]] = field(default_factory=dict)

    @classmethod
    def from_platform(cls, info) -> "Ns3Topology":
        links = {lk.name: lk for lk in info.links}
        for lk in info.links:
            if lk.sharing_policy.upper() == "WIFI" or lk.rate_count > 1:
                raise Ns3PlatformError(f"{info.path}:{lk.line}: link '{lk.name}' is a wifi link: SimGrid's ns-3 "
                                       "model aborts on those (ns-3 simulates Wi-Fi zones itself, which simterpose "
                                       "does not drive); use wired links, or another network model")
        for zone, routing in info.zone_routing.items():
            if routing.lower() == "wifi":
                raise Ns3PlatformError(f"{info.path}: zone '{zone}' is a wifi zone: not supported with the ns-3 "
                                       "network model (use wired links, or another network model)")
            if routing == "Cluster":
                raise Ns3PlatformError(f"{info.path}: <cluster> '{zone}': simterpose supports the ns-3 network "
                                       "model on platforms with explicit one-link routes only (SimGrid's ns-3 "
                                       "binding only builds flat clusters); declare hosts, routers and routes")
        top = cls()
        for route in info.routes:
            if len(route.links) == 1:
                latency = links[route.links[0]].latency
                top._add(route.src, route.dst, latency)
                top._add(route.dst, route.src, latency)  # ns-3's point-to-point links are symmetrical
            else:
                top.long_routes[(route.src, route.dst)] = len(route.links)
        return top

    def _add(self, a: str, b: str, latency: float) -> None:
        self.edges.setdefault(a, []).append((b, latency))

    def _from(self, src: str) -> dict[str, tuple[int, float]]:
        """(hops, latency) of the shortest path from src to every reachable netpoint: fewest hops as
        ns-3's global routing, the lowest latency among those (deterministic)."""
        done = self._paths.get(src)
        if done is not None:
            return done
        best: dict[str, tuple[int, float]] = {}
        heap = [(0, 0.0, src)]
        while heap:
            hops, lat, node = heapq.heappop(heap)
            if node in best:
                continue
            best[node] = (hops, lat)
            for nxt, link_lat in self.edges.get(node, ()):
                if nxt not in best:
                    heapq.heappush(heap, (hops + 1, lat + link_lat, nxt))
        self._paths[src] = best
        return best

    def connected(self, src: str, dst: str) -> bool:
        return src == dst or dst in self._from(src)

    def latency(self, src: str, dst: str) -> float:
        """One-way latency of the path ns-3 uses (0 for a host to itself: SimGrid completes those
        at once under ns-3)."""
        if src == dst:
            return 0.0
        return self._from(src)[dst][1]

    def require_connected(self, hosts: list[str], info) -> None:
        """Every pair of `hosts` must be joined by one-link routes (through routers if need be)."""
        for i, a in enumerate(hosts):
            for b in hosts[i + 1:]:
                if self.connected(a, b):
                    continue
                long = self.long_routes.get((a, b)) or self.long_routes.get((b, a))
                why = (f"their route has {long} links, and SimGrid's ns-3 model ignores routes longer than one link"
                       if long else "no route of one link joins them, directly or through routers")
                raise Ns3PlatformError(
                    f"{info.path}: hosts '{a}' and '{b}' cannot reach each other under the ns-3 network model: "
                    f"{why}. Split long routes with <router> elements, one link per route (SimGrid's "
                    "documentation, 'ns-3 as a SimGrid model')")


def check_tcp_model(value: str) -> None:
    if value not in TCP_MODELS:
        raise Ns3PlatformError(f"ns3/TcpModel:{value}: the ns-3 linked with this SimGrid accepts "
                               f"{' or '.join(TCP_MODELS)} (Reno and Tahoe were removed from ns-3 and crash)")
