"""Scenario inputs: the platform (SimGrid XML) and what to run on it (deployment XML or YAML).

Pure Python — no SimGrid Engine is needed to read or validate a scenario, so every error is reported
before anything starts, as a :class:`ScenarioError` whose message reads ``file:line: problem``.

Platform (:func:`load_platform_info`)
    SimGrid ``<platform version="4.1">`` files: ``<zone>`` (or the older ``<AS>``), ``<host>``,
    ``<peer>``, ``<cluster>`` and ``<cabinet>`` (hosts ``prefix + N + suffix`` for N in ``radical``,
    e.g. ``"0-3,7"``, and the links SimGrid creates for them), wifi links (a bandwidth list),
    ``<link>``, ``<route>``/``<zoneRoute>`` with ``<link_ctn>``. Speeds such as ``"1Gf"``, ``"100Mf"``
    (first pstate if a list), bandwidths ``"10MBps"`` (bytes/s) or ``"100Mbps"`` (bits/s), latencies
    ``"10ms"``. A host's ``<prop id="ip" value="10.0.0.1"/>`` is its virtual IP; hosts without one get
    ``10.0.0.1``, ``10.0.0.2``, ... in document order, skipping every address already declared.

Deployment XML (:func:`load_deployment`, needs the platform)::

    <platform version="4.1">
      <actor host="h1" function="/bin/sleep" start_time="0" kill_time="10">   <!-- or <process> -->
        <argument value="2"/>
        <prop id="cwd" value="/tmp"/>             <!-- optional -->
        <prop id="expected_exit" value="0"/>      <!-- optional, default 0; "any" to accept any -->
        <prop id="expected_final_state" value="running"/>  <!-- or "exited 0", "signaled SIGSEGV" -->
        <prop id="env:LANG" value="C"/>           <!-- optional, one per variable -->
      </actor>
    </platform>

YAML scenario (:func:`load_yaml_scenario`), Shadow-like::

    platform: ../platforms/two_hosts.xml   # required; relative to this YAML file
    network_model: CM02                    # optional (LV08, CM02, ...); the runner's default otherwise
    tcp_slow_start: auto                   # optional, auto | on | off (--tcp-slow-start wins; default auto)
    seed: 7                                # optional, integer >= 0: every random byte derives from it
                                           # (simterpose.randomness; --seed wins; default 1)
    processes:                             # required, non-empty list
      - host: h1                           # required, a host of the platform
        path: /bin/sleep                   # the program ...
        args: [2]                          # ... and its arguments after argv[0] (list, or a string split like a shell)
        env: {LANG: C}                     # optional, added to the environment
        cwd: .                             # optional, relative to this YAML file
        start_time: 0                      # optional, simulated seconds >= 0 (default 0)
        kill_time: 10                      # optional, > start_time (default: never)
        expected_final_state: running      # optional, Shadow's: {exited: N} (default {exited: 0}),
                                           # {signaled: SIGSEGV}, or running (at kill_time, then killed)
        # expected_exit: 0                 # older: an exit status (128+N if signaled; null = any)
      - host: h2
        args: [echo, hello]                # without path: args is the whole argv, args[0] the program

Program resolution (both formats): a name without ``/`` is looked up in ``PATH`` (the process's ``env``
PATH if it sets one, else ours); a relative path with a ``/`` is relative to the scenario file's
directory; the result must be an existing, executable regular file. ``argv[0]`` stays as written;
:attr:`ProcessSpec.binary` is the resolved absolute path.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

import yaml

__all__ = [
    "ScenarioError",
    "HostInfo",
    "LinkInfo",
    "RouteInfo",
    "PlatformInfo",
    "ProcessSpec",
    "FinalState",
    "Scenario",
    "load_platform_info",
    "load_deployment",
    "load_yaml_scenario",
    "load_scenario",
    "host_aliases",
    "hosts_file_lines",
    "is_usable_host_name",
    "parse_final_state",
    "parse_speed",
    "parse_bandwidth",
    "parse_time",
]


class ScenarioError(ValueError):
    """A bad scenario or platform input; the message starts with ``file:line:`` when known."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        self.reason = message
        super().__init__(where + message)


# --------------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------------

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}
_BIN_PREFIX = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}
_TIME_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6,
               "ns": 1e-9, "ps": 1e-12}
_NUM = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")


def _split(text: str, what: str) -> tuple[float, str]:
    m = _NUM.match(str(text))
    if not m:
        raise ValueError(f"invalid {what} {text!r}")
    return float(m.group(1)), m.group(2)


def _prefixed(value: float, unit: str, bases: dict[str, float], text: str, what: str) -> float:
    for base, factor in bases.items():
        if unit.endswith(base):
            prefix = unit[: len(unit) - len(base)]
            if prefix in _BIN_PREFIX:
                return value * _BIN_PREFIX[prefix] * factor
            if prefix in _PREFIX:
                return value * _PREFIX[prefix] * factor
    raise ValueError(f"invalid {what} {text!r}")


def parse_speed(text: str) -> float:
    """``"1Gf"`` → 1e9 flop/s (first value of a pstate list; a bare number means flop/s)."""
    first = str(text).split(",")[0]
    value, unit = _split(first, "speed")
    return value if unit == "" else _prefixed(value, unit, {"flops": 1.0, "f": 1.0}, text, "speed")


# The routings SimGrid 3.32's platform parser accepts (routing="..." of <zone>/<AS>).
# Checked against 3.32: "Star" and the "Cluster*" topologies are not zone routings there.
ROUTINGS = frozenset({"Full", "Floyd", "Dijkstra", "DijkstraCache", "None", "Vivaldi", "Cluster", "Wifi"})


def parse_bandwidth(text: str) -> float:
    """``"10MBps"`` → 1e7 bytes/s; ``"100Mbps"`` → 1.25e7 bytes/s; a bare number means bytes/s.

    A comma-separated list (a wifi link's rate per modulation, ``"54Mbps,36Mbps,24Mbps"``) gives its
    first value; every value must parse.
    """
    values = [_one_bandwidth(part, text) for part in str(text).split(",")]
    if any(v <= 0 for v in values):
        # SimGrid would load it and abort at the first transfer ("The Impossible Did Happen").
        raise ValueError(f"invalid bandwidth {text!r}: must be > 0")
    return values[0]


def _one_bandwidth(part: str, text: str) -> float:
    value, unit = _split(part, "bandwidth")
    return value if unit == "" else _prefixed(value, unit, {"Bps": 1.0, "bps": 0.125}, text, "bandwidth")


def parse_time(text: str) -> float:
    """``"10ms"`` → 0.01 s; a bare number means seconds."""
    value, unit = _split(text, "time")
    if unit == "":
        return value
    if unit not in _TIME_UNITS:
        raise ValueError(f"invalid time {text!r}")
    return value * _TIME_UNITS[unit]


# --------------------------------------------------------------------------------------------------
# A tiny XML tree that remembers line numbers (xml.etree does not)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Elem:
    tag: str
    attrib: dict[str, str]
    line: int
    children: list["_Elem"] = field(default_factory=list)

    def iter(self, *tags: str):
        for child in self.children:
            if not tags or child.tag in tags:
                yield child


def _parse_xml(path: Path, need_doctype: bool = False) -> _Elem:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror or exc}", path) from None
    parser = expat.ParserCreate()
    stack: list[_Elem] = []
    root: list[_Elem] = []

    def start(tag, attrs):
        elem = _Elem(tag, dict(attrs), parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(elem)
        stack.append(elem)

    def end(_tag):
        stack.pop()

    doctype: list[str] = []
    parser.StartDoctypeDeclHandler = lambda name, *_rest: doctype.append(name)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ScenarioError(
            f"malformed XML: {expat.ErrorString(exc.code)} (column {exc.offset + 1})", path, exc.lineno
        ) from None
    if not root:
        raise ScenarioError("empty XML document", path)
    if need_doctype and not doctype:
        raise ScenarioError(
            'missing <!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd"> (SimGrid rejects the file '
            "without it)", path, 1)
    return root[0]


# --------------------------------------------------------------------------------------------------
# Platform
# --------------------------------------------------------------------------------------------------


SILENT_TRUE = ("1", "true", "yes")
SILENT_VALUES = SILENT_TRUE + ("0", "false", "no")


@dataclass(frozen=True)
class HostInfo:
    name: str
    speed: float  # flop/s (pstate 0)
    cores: int
    declared_ip: str | None  # the host's "ip" property, if any
    ip: str  # declared_ip, or the one assigned automatically
    zone: str | None
    line: int
    # What programs call the host (hosts file, uname): ``name`` when it is a usable host name, else
    # a DNS label made from it (see :func:`host_aliases`).
    alias: str = ""
    props: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def resolvable_name(self) -> str:
        return self.alias or self.name

    @property
    def silent(self) -> bool:
        """``<prop id="silent" value="1"/>``: the host is there (a name, an address, routes) but its
        network stack never answers, like a machine switched off or behind a firewall dropping
        everything: SYNs get neither SYN-ACK nor reset (connect(2) times out as Linux does, after
        its SYN retransmissions), datagrams vanish without an ICMP error. No process runs on it."""
        return self.props.get("silent", "0").lower() in SILENT_TRUE


@dataclass(frozen=True)
class LinkInfo:
    name: str
    bandwidth: float  # bytes/s
    latency: float  # s
    sharing_policy: str
    line: int
    zone: str | None = None  # the zone declaring it (None: outside every zone)
    rate_count: int = 1  # a wifi link's bandwidths, one per modulation (bandwidth is the first)


@dataclass(frozen=True)
class RouteInfo:
    src: str
    dst: str
    links: tuple[str, ...]
    symmetrical: bool
    line: int


@dataclass
class PlatformInfo:
    path: Path
    hosts: list[HostInfo]
    links: list[LinkInfo]
    routes: list[RouteInfo]
    zones: list[str]
    zone_routing: dict[str, str] = field(default_factory=dict)  # zone id -> its routing ("Full", "Wifi"...)

    @property
    def host_names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def host(self, name: str) -> HostInfo:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def has_host(self, name: str) -> bool:
        return any(h.name == name for h in self.hosts)

    def find_host(self, name: str) -> HostInfo | None:
        """The host called ``name`` in the platform, else the one whose alias is ``name``."""
        return next((h for h in self.hosts if h.name == name), None) or \
            next((h for h in self.hosts if h.alias and h.alias == name), None)

    def host_by_ip(self, ip: str) -> HostInfo | None:
        return next((h for h in self.hosts if h.ip == ip), None)


def _radical(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def load_platform_info(path: str | os.PathLike) -> PlatformInfo:
    """Hosts (with speeds, cores and IPs), links, routes and zones of a SimGrid platform file."""
    path = Path(path)
    root = _parse_xml(path, need_doctype=True)
    if root.tag != "platform":
        raise ScenarioError(f"root element is <{root.tag}>, expected <platform>", path, root.line)
    raw_hosts: list[tuple[str, float, int, str | None, str | None, int]] = []
    host_props: dict[str, dict[str, str]] = {}
    links: list[LinkInfo] = []
    routes: list[RouteInfo] = []
    zones: list[str] = []
    zone_routing: dict[str, str] = {}

    def need(elem: _Elem, attr: str) -> str:
        if attr not in elem.attrib:
            raise ScenarioError(f"<{elem.tag}> lacks the '{attr}' attribute", path, elem.line)
        return elem.attrib[attr]

    def unit(fn, elem: _Elem, attr: str, default: str | None = None) -> float:
        text = elem.attrib.get(attr, default) if default is not None else need(elem, attr)
        try:
            return fn(text)
        except ValueError as exc:
            raise ScenarioError(f"<{elem.tag}> {attr}: {exc}", path, elem.line) from None

    def cores_of(elem: _Elem) -> int:
        try:
            return int(elem.attrib.get("core", "1"))
        except ValueError:
            raise ScenarioError(f"<{elem.tag}> core: invalid count {elem.attrib['core']!r}", path, elem.line) from None

    def walk(elem: _Elem, zone: str | None) -> None:
        for child in elem.children:
            tag = child.tag
            if tag in ("zone", "AS"):
                zones.append(need(child, "id"))
                zone_routing[child.attrib["id"]] = child.attrib.get("routing", "")
                if child.attrib.get("routing", "Full") not in ROUTINGS:
                    # SimGrid only says "Not a valid model!", without the file or the line.
                    raise ScenarioError(f"<{tag}> routing: unknown {child.attrib['routing']!r} (SimGrid knows "
                                        f"{', '.join(sorted(ROUTINGS))})", path, child.line)
                walk(child, child.attrib["id"])
            elif tag in ("host", "peer"):
                props = {p.attrib.get("id", ""): p.attrib.get("value", "") for p in child.iter("prop")}
                ip = props.get("ip")
                if props.get("silent", "0").lower() not in SILENT_VALUES:
                    raise ScenarioError(f"host '{child.attrib.get('id', '')}': property silent must be 1 or 0 "
                                        f"(true/false, yes/no), not {props['silent']!r}", path, child.line)
                host_props[child.attrib.get("id", "")] = props
                raw_hosts.append((need(child, "id"), unit(parse_speed, child, "speed"), cores_of(child), ip, zone,
                                  child.line))
            elif tag in ("cluster", "cabinet"):
                # A <cluster> is a zone of its own; a <cabinet> is a row of hosts (each with its own
                # link) inside the enclosing zone. Both name hosts prefix + N + suffix.
                cid = need(child, "id")
                if tag == "cluster":
                    zones.append(cid)
                    zone_routing[cid] = "Cluster"
                speed = unit(parse_speed, child, "speed")
                try:
                    numbers = _radical(need(child, "radical"))
                except ValueError:
                    raise ScenarioError(f"<{tag}> radical: invalid {child.attrib['radical']!r}", path,
                                        child.line) from None
                prefix, suffix = child.attrib.get("prefix", ""), child.attrib.get("suffix", "")
                # The links SimGrid creates for them (names as SimGrid 3.32 gives them; a split-duplex
                # link X shows in routes as X_UP and X_DOWN).
                bw, lat = unit(parse_bandwidth, child, "bw"), unit(parse_time, child, "lat", "0")
                policy = child.attrib.get("sharing_policy", "SPLITDUPLEX") if tag == "cluster" else "SPLITDUPLEX"
                for n in numbers:
                    host = f"{prefix}{n}{suffix}"
                    raw_hosts.append((host, speed, cores_of(child), None, cid if tag == "cluster" else zone,
                                      child.line))
                    link = f"{cid}_link_{n}" if tag == "cluster" else f"link_{host}"
                    links.append(LinkInfo(link, bw, lat, policy, child.line, cid if tag == "cluster" else zone))
                if tag == "cluster" and "bb_bw" in child.attrib:
                    links.append(LinkInfo(f"{cid}_backbone", unit(parse_bandwidth, child, "bb_bw"),
                                          unit(parse_time, child, "bb_lat", "0"),
                                          child.attrib.get("bb_sharing_policy", "SHARED"), child.line, cid))
            elif tag in ("link", "backbone"):
                links.append(LinkInfo(need(child, "id"), unit(parse_bandwidth, child, "bandwidth"),
                                      unit(parse_time, child, "latency", "0"),
                                      child.attrib.get("sharing_policy", "SHARED"), child.line, zone,
                                      len(str(child.attrib.get("bandwidth", "")).split(","))))
                if links[-1].sharing_policy.upper() == "WIFI" and links[-1].latency != 0:
                    raise ScenarioError(f"wifi link '{links[-1].name}': SimGrid accepts no latency on a wifi "
                                        "link (write latency=\"0ms\")", path, child.line)
            elif tag in ("route", "zoneRoute", "ASroute"):
                ids = tuple(need(lc, "id") for lc in child.iter("link_ctn"))
                routes.append(RouteInfo(need(child, "src"), need(child, "dst"), ids,
                                        child.attrib.get("symmetrical", "YES").upper() == "YES", child.line))

    walk(root, None)

    seen: dict[str, int] = {}
    declared: dict[str, str] = {}
    for name, _speed, _cores, ip, _zone, line in raw_hosts:
        if name in seen:
            raise ScenarioError(f"duplicate host '{name}' (first at line {seen[name]})", path, line)
        seen[name] = line
        if ip is not None:
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                raise ScenarioError(f"host '{name}': invalid ip property {ip!r}", path, line) from None
            if ip in declared:
                raise ScenarioError(f"host '{name}': ip {ip} already belongs to host '{declared[ip]}'", path, line)
            declared[ip] = name
        ip6 = host_props.get(name, {}).get("ip6")
        if ip6:
            # ipv6(7): a host's own IPv6 address (AAAA in the hosts file); not mapped, loopback or ANY
            try:
                addr = ipaddress.IPv6Address(ip6)
            except ValueError:
                addr = None
            if addr is None or addr.ipv4_mapped is not None or addr.is_loopback or addr.is_unspecified:
                raise ScenarioError(f"host '{name}': invalid ip6 property {ip6!r} (a plain IPv6 address, "
                                    f"e.g. fd00::1)", path, line)
            if str(addr) in declared:
                raise ScenarioError(f"host '{name}': ip6 {ip6} already belongs to host "
                                    f"'{declared[str(addr)]}'", path, line)
            declared[str(addr)] = name

    link_names = {link.name for link in links}
    for route in routes:
        for lid in route.links:
            if lid not in link_names:
                raise ScenarioError(f"route {route.src} -> {route.dst}: unknown link '{lid}'", path, route.line)

    auto = _auto_ips(set(declared))
    aliases = host_aliases([h[0] for h in raw_hosts])
    hosts = [HostInfo(name, speed, cores, ip, ip if ip is not None else next(auto), zone, line,
                      aliases.get(name, ""), host_props.get(name, {}))
             for name, speed, cores, ip, zone, line in raw_hosts]
    return PlatformInfo(path, hosts, links, routes, zones, zone_routing)


# --------------------------------------------------------------------------------------------------
# Host names programs can use
# --------------------------------------------------------------------------------------------------

#: Longest name uname() can return (struct utsname's nodename is char[65], NUL included).
HOST_NAME_MAX = 64
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_NOT_LABEL_CHARS = re.compile(r"[^A-Za-z0-9-]+")


def is_usable_host_name(name: str) -> bool:
    """Can programs use ``name`` as is: in a hosts file, from uname(), through getaddrinfo()?

    Dot-separated DNS labels (letters, digits, inner hyphens, 1-63 characters each), at most
    :data:`HOST_NAME_MAX` characters in all, and a last label that is not all digits: getaddrinfo
    reads ``100030591`` or ``10.5`` as IPv4 numbers (inet_aton), never as names.
    """
    if not name or len(name) > HOST_NAME_MAX:
        return False
    labels = name.split(".")
    return all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def host_aliases(names: list[str]) -> dict[str, str]:
    """An alias for every name that :func:`is_usable_host_name` refuses: a single DNS label.

    Runs of other characters become ``-`` (``Cpu A`` → ``Cpu-A``, ``a.b_c`` → ``a-b-c``); an
    all-digit result gets ``host-`` in front (``100030591`` → ``host-100030591``); a result longer
    than 63 characters is cut to 54 and ends with ``-`` and 8 hex digits of the name's SHA-1 (so two
    long names sharing a prefix differ). An alias equal to another host's name or alias (DNS is
    case-insensitive) gets ``-2``, ``-3``... in document order. Deterministic: same names, same aliases.
    """
    import hashlib

    taken = {n.lower() for n in names if is_usable_host_name(n)}
    out: dict[str, str] = {}
    for name in names:
        if is_usable_host_name(name) or name in out:
            continue
        base = _NOT_LABEL_CHARS.sub("-", name).strip("-")
        if not base or base.isdigit():
            base = f"host-{base}" if base else "host"
        if len(base) > 63:
            digest = hashlib.sha1(name.encode()).hexdigest()[:8]
            base = f"{base[:54].rstrip('-')}-{digest}"
        alias, n = base, 1
        while alias.lower() in taken:
            n += 1
            suffix = f"-{n}"
            alias = base[: 63 - len(suffix)].rstrip("-") + suffix
        taken.add(alias.lower())
        out[name] = alias
    return out


def _hosts_file_safe(name: str) -> bool:
    """Can ``name`` itself stand in a hosts file line (no blank, no comment sign, not a number)?"""
    return bool(name) and not any(c.isspace() or c == "#" or not c.isprintable() for c in name) \
        and not name.split(".")[-1].isdigit()


def hosts_file_lines(hosts: list[tuple[str, str]]) -> list[str]:
    """``/etc/hosts`` lines for ``(name, ip)`` pairs: the resolvable name first (the alias when the
    name needs one), then the name itself too when a hosts file can carry it (``my_host``)."""
    aliases = host_aliases([name for name, _ in hosts])
    lines = []
    for name, ip in hosts:
        alias = aliases.get(name)
        if alias is None:
            lines.append(f"{ip}\t{name}")
        elif _hosts_file_safe(name):
            lines.append(f"{ip}\t{alias} {name}")
        else:
            lines.append(f"{ip}\t{alias}")
    return lines


def _auto_ips(taken: set[str]):
    """10.0.0.1, 10.0.0.2, ... skipping taken addresses and .0/.255 last octets."""
    n = int(ipaddress.IPv4Address("10.0.0.1"))
    last = int(ipaddress.IPv4Address("10.255.255.254"))
    while n <= last:
        addr = ipaddress.IPv4Address(n)
        n += 1
        text = str(addr)
        if text.endswith((".0", ".255")) or text in taken:
            continue
        yield text
    raise ScenarioError("no virtual IP left in 10.0.0.0/8")


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalState:
    """How a process ended, in Shadow's terms: ``exited`` with a status, ``signaled`` by a signal, or
    ``running`` — still running when its kill_time (or the run's --stop-time) came and it was killed."""

    kind: str  # "exited", "signaled" or "running"
    status: int | None = None  # exited: the exit status
    signal: int | None = None  # signaled: the signal number

    def __str__(self) -> str:
        if self.kind == "exited":
            return f"exited {self.status}"
        if self.kind == "signaled":
            return f"signaled {signal_name(self.signal)}"
        return "running"

    def as_json(self):
        """As a YAML scenario writes it: ``{"exited": 0}``, ``{"signaled": "SIGSEGV"}`` or ``"running"``."""
        if self.kind == "exited":
            return {"exited": self.status}
        if self.kind == "signaled":
            return {"signaled": signal_name(self.signal)}
        return "running"


def signal_name(number: int | None) -> str:
    import signal as _signal

    try:
        return _signal.Signals(number).name
    except (ValueError, TypeError):
        return f"signal {number}"


def parse_final_state(value: Any) -> FinalState:
    """``running``, ``{exited: N}``, ``{signaled: SIGSEGV}`` (or ``SEGV``, or ``11``); in a string
    (deployment XML): ``"exited 0"``, ``"signaled SIGSEGV"``. ValueError otherwise."""
    import signal as _signal

    if isinstance(value, str):
        words = value.replace(":", " ").split()
        if words == ["running"]:
            return FinalState("running")
        if len(words) == 2:
            value = {words[0]: words[1]}
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("expected running, {exited: N} or {signaled: SIGNAME}")
    (kind, arg), = value.items()
    if kind == "exited":
        try:
            if isinstance(arg, bool):
                raise ValueError
            status = int(arg)
        except (TypeError, ValueError):
            raise ValueError(f"exited: {arg!r} is not an exit status") from None
        if not 0 <= status <= 255:
            raise ValueError(f"exited: {status} is not in 0..255")
        return FinalState("exited", status=status)
    if kind == "signaled":
        text = str(arg).strip().upper()
        if text.isdigit():
            number = int(text)
        else:
            name = text if text.startswith("SIG") else "SIG" + text
            number = getattr(_signal.Signals, name, None)
            if number is None:
                raise ValueError(f"signaled: unknown signal {arg!r}")
        try:
            number = int(_signal.Signals(int(number)))
        except ValueError:
            raise ValueError(f"signaled: unknown signal {arg!r}") from None
        return FinalState("signaled", signal=number)
    raise ValueError(f"unknown final state {kind!r} (running, exited or signaled)")


@dataclass(frozen=True)
class ProcessSpec:
    host: str
    argv: list[str]  # argv[0] as written in the scenario
    binary: str  # absolute path of the program to execute
    env: dict[str, str] = field(default_factory=dict)  # added to the environment
    cwd: str | None = None  # None: inherit the runner's
    start_time: float = 0.0
    kill_time: float | None = None
    expected_exit: int | None = 0  # None: any exit status is fine
    source: str = ""  # "file:line" of the entry, for messages
    # Shadow's expected_final_state; None: judged by expected_exit (exit status, 128+N if signaled)
    expected_final_state: FinalState | None = None


@dataclass
class Scenario:
    path: Path | None
    platform: Path
    processes: list[ProcessSpec]
    network_model: str | None = None
    platform_info: PlatformInfo | None = None
    seed: int | None = None  # the scenario's `seed:` (None: the runner's, simterpose.randomness)
    tcp_slow_start: str | None = None  # the scenario's `tcp_slow_start:` (None: the runner's)


def _resolve_binary(program: str, base: Path, env: dict[str, str], err) -> str:
    if not program:
        raise err("empty program name", "program")
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH", os.environ.get("PATH", os.defpath)))
        if found is None:
            raise err(f"program '{program}' not found in PATH", "program")
        return os.path.abspath(found)
    candidate = Path(program) if os.path.isabs(program) else base / program
    if not candidate.exists():
        raise err(f"program '{program}' not found ({candidate})", "program")
    if not candidate.is_file():
        raise err(f"program '{program}' is not a regular file", "program")
    if not os.access(candidate, os.X_OK):
        raise err(f"program '{program}' is not executable", "program")
    return str(candidate.resolve())


def _number(value: Any, what: str, err) -> float:
    if isinstance(value, bool):
        raise err(f"invalid {what} {value!r}", what)
    try:
        result = parse_time(value) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise err(f"invalid {what} {value!r}", what) from None
    if result != result or result in (float("inf"), float("-inf")):
        raise err(f"invalid {what} {value!r}", what)
    return result


def _make_spec(*, host: str, argv: list[str], env: dict[str, str], cwd: Any, start: Any, kill: Any,
               expected: Any, base: Path, platform: PlatformInfo, source: str, err,
               final_state: Any = None) -> ProcessSpec:
    found = platform.find_host(host)
    if found is None:
        raise err(f"unknown host '{host}'", "host")
    host = found.name  # a process may name its host by alias
    if found.silent:
        raise err(f"host '{host}' is silent (<prop id=\"silent\">: its network stack never answers): "
                  "no process can run there", "host")
    start_time = 0.0 if start is None else _number(start, "start_time", err)
    if start_time < 0:
        raise err(f"negative start_time {start!r}", "start_time")
    kill_time = None
    if kill is not None:
        kill_time = _number(kill, "kill_time", err)
        if kill_time <= start_time:
            raise err(f"kill_time {kill!r} is not after start_time {start_time}", "kill_time")
    if expected is None or (isinstance(expected, str) and expected.lower() == "any"):
        expected_exit = None
    else:
        try:
            if isinstance(expected, bool):
                raise ValueError
            expected_exit = int(expected)
        except (TypeError, ValueError):
            raise err(f"invalid expected_exit {expected!r}", "expected_exit") from None
        if not 0 <= expected_exit <= 255:
            raise err(f"expected_exit {expected_exit} is not in 0..255", "expected_exit")
    expected_state = None
    if final_state is not None:
        try:
            expected_state = parse_final_state(final_state)
        except ValueError as exc:
            raise err(f"expected_final_state: {exc}", "expected_final_state") from None
        if expected_state.kind == "running" and kill_time is None:
            raise err("expected_final_state 'running' needs a kill_time (the date it is still running at)",
                      "expected_final_state")
        # What the exit status will be (compare's real runs judge by it); running: killed, any.
        expected_exit = {"exited": expected_state.status, "running": None}.get(
            expected_state.kind, 128 + (expected_state.signal or 0))
    binary = _resolve_binary(argv[0], base, env, err)
    cwd_path = None
    if cwd is not None:
        c = Path(str(cwd))
        c = c if c.is_absolute() else base / c
        if not c.is_dir():
            raise err(f"cwd '{cwd}' is not a directory", "cwd")
        cwd_path = str(c.resolve())
    return ProcessSpec(host, argv, binary, env, cwd_path, start_time, kill_time, expected_exit, source,
                       expected_state)


def load_deployment(path: str | os.PathLike, platform: str | os.PathLike | PlatformInfo) -> Scenario:
    """Processes of a SimGrid deployment file (``<actor>`` or ``<process>`` elements)."""
    path = Path(path)
    info = platform if isinstance(platform, PlatformInfo) else load_platform_info(platform)
    root = _parse_xml(path)
    if root.tag != "platform":
        raise ScenarioError(f"root element is <{root.tag}>, expected <platform>", path, root.line)
    base = path.resolve().parent
    specs = []
    for elem in root.iter("actor", "process"):

        def err(message, _key=None, _line=elem.line):
            return ScenarioError(message, path, _line)

        for attr in ("host", "function"):
            if not elem.attrib.get(attr):
                raise err(f"<{elem.tag}> lacks the '{attr}' attribute")
        argv = [elem.attrib["function"]]
        env: dict[str, str] = {}
        cwd = None
        expected: Any = 0
        final_state = None
        for child in elem.children:
            if child.tag == "argument":
                if "value" not in child.attrib:
                    raise ScenarioError("<argument> lacks the 'value' attribute", path, child.line)
                argv.append(child.attrib["value"])
            elif child.tag == "prop":
                pid, value = child.attrib.get("id", ""), child.attrib.get("value", "")
                if pid == "cwd":
                    cwd = value
                elif pid == "expected_exit":
                    expected = value
                elif pid == "expected_final_state":
                    final_state = value
                elif pid.startswith("env:") and len(pid) > 4:
                    env[pid[4:]] = value
                else:
                    raise ScenarioError(f"unknown <prop id='{pid}'> (cwd, expected_exit, expected_final_state "
                                        "or env:NAME)", path, child.line)
            else:
                raise ScenarioError(f"unexpected <{child.tag}> in <{elem.tag}>", path, child.line)
        kill = elem.attrib.get("kill_time")
        if kill is not None and kill.strip() in ("-1", "-1.0"):  # SimGrid's "never"
            kill = None
        specs.append(_make_spec(host=elem.attrib["host"], argv=argv, env=env, cwd=cwd,
                                start=elem.attrib.get("start_time"), kill=kill, expected=expected, base=base,
                                platform=info, source=f"{path}:{elem.line}", err=err, final_state=final_state))
    if not specs:
        raise ScenarioError("no <actor> in the deployment", path, root.line)
    return Scenario(path, info.path, specs, None, info)


# --------------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------------

_TOP_KEYS = {"platform", "network_model", "tcp_slow_start", "seed", "processes"}
_PROC_KEYS = {"host", "path", "args", "env", "cwd", "start_time", "kill_time", "expected_exit",
              "expected_final_state"}


def _node_line(node) -> int:
    return node.start_mark.line + 1


def _mapping_get(node, key: str):
    """(key node, value node) of ``key`` in a YAML MappingNode, or None."""
    for k, v in node.value:
        if getattr(k, "value", None) == key:
            return k, v
    return None


def load_yaml_scenario(path: str | os.PathLike) -> Scenario:
    """Read a YAML scenario (format in this module's docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror or exc}", path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"malformed YAML: {problem}", path, mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ScenarioError("a scenario is a mapping with 'platform' and 'processes'", path, 1)
    for key in data:
        if key not in _TOP_KEYS:
            k, _ = _mapping_get(node, key)
            raise ScenarioError(f"unknown key '{key}' (expected {', '.join(sorted(_TOP_KEYS))})", path,
                                _node_line(k))
    for key in ("platform", "processes"):
        if key not in data:
            raise ScenarioError(f"missing key '{key}'", path, 1)
    base = path.resolve().parent
    plat_line = _node_line(_mapping_get(node, "platform")[1])
    if not isinstance(data["platform"], str) or not data["platform"]:
        raise ScenarioError("'platform' must be a path", path, plat_line)
    platform = Path(data["platform"])
    platform = (platform if platform.is_absolute() else base / platform).resolve()
    if not platform.is_file():
        raise ScenarioError(f"platform file not found: {data['platform']}", path, plat_line)
    info = load_platform_info(platform)
    model = data.get("network_model")
    if model is not None and not isinstance(model, str):
        raise ScenarioError("'network_model' must be a string", path, _node_line(_mapping_get(node, "network_model")[1]))

    slow_start = data.get("tcp_slow_start")
    if slow_start is not None and slow_start not in ("auto", "on", "off"):
        # YAML reads a bare on/off as a boolean: say how to write it
        hint = " (quote it: 'on' or 'off')" if isinstance(slow_start, bool) else ""
        raise ScenarioError(f"'tcp_slow_start' must be auto, on or off, not {slow_start!r}{hint}", path,
                            _node_line(_mapping_get(node, "tcp_slow_start")[1]))

    seed = None
    if "seed" in data:
        from .randomness import parse_seed

        try:
            seed = parse_seed(data["seed"])
        except ValueError as exc:
            raise ScenarioError(f"'seed': {exc}", path, _node_line(_mapping_get(node, "seed")[1])) from None

    procs_node = _mapping_get(node, "processes")[1]
    procs = data["processes"]
    if not isinstance(procs, list) or not procs:
        raise ScenarioError("'processes' must be a non-empty list", path, _node_line(procs_node))
    specs = []
    for i, (entry, enode) in enumerate(zip(procs, procs_node.value, strict=True)):
        line = _node_line(enode)

        def err(message, _line=line, _i=i):
            return ScenarioError(f"process #{_i + 1}: {message}", path, _line)

        if not isinstance(entry, dict):
            raise err("must be a mapping")

        def key_err(key, message, _enode=enode, _i=i):
            found = _mapping_get(_enode, key)
            return ScenarioError(f"process #{_i + 1}: {message}", path, _node_line(found[1]) if found else
                                 _node_line(_enode))

        for key in entry:
            if key not in _PROC_KEYS:
                raise key_err(key, f"unknown key '{key}' (expected {', '.join(sorted(_PROC_KEYS))})")
        if "host" not in entry:
            raise err("missing key 'host'")
        if "expected_exit" in entry and "expected_final_state" in entry:
            raise key_err("expected_final_state", "give expected_final_state or expected_exit, not both")
        if not isinstance(entry["host"], str):
            raise key_err("host", "'host' must be a string")
        args = entry.get("args")
        if isinstance(args, str):
            try:
                args = shlex.split(args)
            except ValueError as e:   # an unterminated quote
                raise key_err("args", f"'args' cannot be split like a shell line: {e}") from None
        elif args is None:
            args = []
        elif isinstance(args, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                            for a in args):
            args = [str(a) for a in args]
        elif isinstance(args, list) and any(isinstance(a, bool) or a is None for a in args):
            # YAML reads true/false/yes/no/on/off and null/~ as no string: `args: [true]` means
            # the program `true` to whoever writes it
            i, odd = next((i, a) for i, a in enumerate(args) if isinstance(a, bool) or a is None)
            what = {True: "the YAML boolean true (written true, yes or on)",
                    False: "the YAML boolean false (written false, no or off)",
                    None: "YAML's null (written null, ~ or nothing)"}[odd]
            raise key_err("args", f"'args' item {i} is {what}, not a string: quote it, e.g. ['true']")
        else:
            raise key_err("args", "'args' must be a list of strings or a string")
        if "path" in entry:
            if not isinstance(entry["path"], str) or not entry["path"]:
                raise key_err("path", "'path' must be a non-empty string")
            argv = [entry["path"], *args]
        elif args:
            argv = args
        else:
            raise err("missing key 'path' (or 'args' with the whole argv)")
        env = entry.get("env") or {}
        if not isinstance(env, dict):
            raise key_err("env", "'env' must be a mapping")
        env = {str(k): "" if v is None else str(v) for k, v in env.items()}

        def field_err(message, key=None, _key_err=key_err, _err=err, _entry=entry):
            if key == "program":
                key = "path" if "path" in _entry else "args"
            return _key_err(key, message) if key in _entry else _err(message)

        specs.append(_make_spec(host=entry["host"], argv=argv, env=env, cwd=entry.get("cwd"),
                                start=entry.get("start_time"), kill=entry.get("kill_time"),
                                expected=entry.get("expected_exit", 0), base=base, platform=info,
                                source=f"{path}:{line}", err=field_err,
                                final_state=entry.get("expected_final_state")))
    return Scenario(path, info.path, specs, model, info, seed, slow_start)


def load_scenario(path: str | os.PathLike, platform: str | os.PathLike | None = None) -> Scenario:
    """A ``.yaml``/``.yml`` scenario, or a deployment ``.xml`` (which then needs ``platform``)."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        return load_yaml_scenario(path)
    if platform is None:
        raise ScenarioError("a deployment file needs a platform file", path)
    return load_deployment(path, platform)
