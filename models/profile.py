"""The categorical part of an image baseline: which processes, parents, ports, endpoints and
syscalls the image's containers were seen to use, with first/last seen, counts and provenance.

Items are keyed tuples per dimension; :meth:`ImageProfile.observe` returns the (dimension, key)
pairs an event touches so the engine can decide learn vs. deviate. Profiles merge associatively
and commutatively (counts add, first-seen min, last-seen max, container sets union).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Final, Iterator

from sensor.events import Event

# "rule": findings of learnable rules seen while learning (rule, executable, parent), expected since;
# "session": what exec sessions did, scoped by command line (models/engine.py, session_items)
DIMENSIONS: Final = ("process", "parent", "args", "listen", "outbound", "inbound", "syscall", "rule", "session")
MAX_CONTAINERS_TRACKED: Final = 64


@dataclass
class ItemStat:
    first_ns: int
    last_ns: int
    count: int = 1
    containers: set[str] = field(default_factory=set)
    provenance: dict[str, Any] = field(default_factory=dict)  # who saw it first: container, parent
    nodes: set[str] = field(default_factory=set)  # sensors' node names that saw it (empty: unnamed)

    def bump(self, time_ns: int, container: str, node: str = "") -> None:
        self.count += 1
        self.last_ns = max(self.last_ns, time_ns)
        if len(self.containers) < MAX_CONTAINERS_TRACKED:
            self.containers.add(container)
        if node:
            self.nodes.add(node)

    def merged(self, other: ItemStat) -> ItemStat:
        first = self if (self.first_ns, sorted(self.containers)) <= (
            other.first_ns, sorted(other.containers)) else other
        return ItemStat(min(self.first_ns, other.first_ns), max(self.last_ns, other.last_ns),
                        self.count + other.count,
                        set(sorted(self.containers | other.containers)[:MAX_CONTAINERS_TRACKED]),
                        dict(first.provenance), self.nodes | other.nodes)

    def to_list(self) -> list[Any]:
        return [self.first_ns, self.last_ns, self.count, sorted(self.containers), self.provenance,
                sorted(self.nodes)]

    @classmethod
    def from_list(cls, data: list[Any]) -> ItemStat:
        """Format 1 rows have no node list (5 fields)."""
        return cls(int(data[0]), int(data[1]), int(data[2]), set(data[3]), dict(data[4]),
                   set(data[5]) if len(data) > 5 else set())


def endpoint_key(ev: Event) -> tuple[str, int, str]:
    """Outbound endpoint: (proto, port, address) — the address collapses to its /24 (/64 for
    IPv6) so a service behind many replicas is one item; loopback stays exact."""
    addr = ev.daddr or ev.path
    if ev.family in ("ipv4", "ipv6") and addr:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return (ev.proto or ev.family, ev.dport, addr)
        if not ip.is_loopback:
            prefix = 24 if ip.version == 4 else 64
            addr = str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    return (ev.proto or ev.family, ev.dport, addr)


def item_keys(ev: Event) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(dimension, key) pairs this event contributes to a profile."""
    if ev.kind == "exec":
        yield "process", (ev.exe, ev.uid)
        yield "parent", (ev.exe, ev.pexe)
        if len(ev.args) > 1 and not ev.args[1].startswith("-") and len(ev.args[1]) < 64:
            yield "args", (ev.exe, ev.args[1])
    elif ev.kind == "listen":
        yield "listen", (ev.proto, ev.sport)
    elif ev.kind == "connect":  # whatever its outcome: a refused or timed-out connect counts too
        yield "outbound", endpoint_key(ev)
    elif ev.kind == "accept" and ev.sport:  # port 0: the sensor could not tell which listener
        yield "inbound", (ev.proto, ev.sport)
    elif ev.kind == "syscall":
        yield "syscall", (ev.syscall_nr,)


class ImageProfile:
    """Items per dimension for one image (all its containers, on every node that merged in)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[tuple[Any, ...], ItemStat]] = {d: {} for d in DIMENSIONS}
        self.containers: set[str] = set()
        self.nodes: set[str] = set()

    def known(self, dim: str, key: tuple[Any, ...]) -> bool:
        return key in self.items[dim]

    def learn(self, dim: str, key: tuple[Any, ...], ev: Event, node: str = "") -> bool:
        """Record an occurrence (seen on sensor ``node``, if named); True if the item is new."""
        table = self.items[dim]
        stat = table.get(key)
        if stat is not None:
            stat.bump(ev.time_ns, ev.container_id, node)
            return False
        table[key] = ItemStat(ev.time_ns, ev.time_ns, 1, {ev.container_id},
                              {"container": ev.container_name or ev.container_id[:12],
                               "container_id": ev.container_id, "parent": ev.pexe,
                               "time_ns": ev.time_ns}, {node} if node else set())
        return True

    def size(self) -> int:
        return sum(len(t) for t in self.items.values())

    def merge(self, other: ImageProfile) -> ImageProfile:
        out = ImageProfile()
        for dim in DIMENSIONS:
            mine, theirs = self.items[dim], other.items[dim]
            table = out.items[dim]
            for key in mine.keys() | theirs.keys():
                a, b = mine.get(key), theirs.get(key)
                table[key] = a.merged(b) if a and b else ItemStat.from_list((a or b).to_list())  # type: ignore[union-attr]
        out.containers = self.containers | other.containers
        out.nodes = self.nodes | other.nodes
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"items": {d: [[list(k), s.to_list()] for k, s in sorted(t.items(), key=_sort_key)]
                          for d, t in self.items.items()},
                "containers": sorted(self.containers), "nodes": sorted(self.nodes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageProfile:
        prof = cls()
        for dim, rows in data.get("items", {}).items():
            if dim in prof.items:
                prof.items[dim] = {tuple(k): ItemStat.from_list(s) for k, s in rows}
        prof.containers = set(data.get("containers", ()))
        prof.nodes = set(data.get("nodes", ()))
        return prof


def _sort_key(pair: tuple[tuple[Any, ...], ItemStat]) -> str:
    return repr(pair[0])
