"""Watching layer 2 from the client's side: its neighbour table, and who answers for an IP.

* `NeighborWatcher`: the client namespace's neighbour table, kept current from netlink events
  (RTM_NEWNEIGH), so that a failover is timed to the millisecond at the moment the kernel's
  entry for the EIP points at the new MAC.
* `AnswerCapture`: an AF_PACKET capture on the client's link that records every ARP reply,
  gratuitous ARP and neighbour advertisement about the watched IPs, with the MAC that sent
  it; optionally it asks itself (an ARP request every `probe_interval`, bounded in count), so
  that "only one node answers at any time" can be checked request by request.

Both open their sockets inside the namespace (setns on this thread, then back) and are read by
a thread of their own. Frames are parsed by porter-lb's own codec (porter_lb.layer2.packets).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from porter_lab import netns as _netns
from porter_lab.capture import LinkCapture
from porter_lab.netlink import NetlinkWatcher
from porter_lb.layer2 import packets

_RTMGRP_NEIGH = 0x4
_NUD_FAILED = 0x20
_NUD_INCOMPLETE = 0x01


class NeighborWatcher(NetlinkWatcher):
    """IP -> MAC of the usable entries in `netns`'s neighbour table, from netlink events."""

    def __init__(self, netns: str, link: str = "eth0") -> None:
        super().__init__(netns, _RTMGRP_NEIGH)
        self.entries: dict[str, str] = {}
        self.changed_at: dict[str, float] = {}  # monotonic time each entry got its MAC
        for entry in _netns.ip_json("neigh", "show", "dev", link, netns=netns):
            if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
                self.entries[str(ipaddress.ip_address(entry["dst"]))] = entry["lladdr"]
        self.start()

    def apply(self, messages: list[Any]) -> None:
        for msg in messages:
            dst = msg.get_attr("NDA_DST")
            if dst is None:
                continue
            ip = str(ipaddress.ip_address(dst))
            lladdr = msg.get_attr("NDA_LLADDR")
            state = int(msg.get("state", 0))
            if (
                msg.get("event") == "RTM_DELNEIGH"
                or not lladdr
                or state & (_NUD_FAILED | _NUD_INCOMPLETE)
            ):
                self.entries.pop(ip, None)
            elif self.entries.get(ip) != str(lladdr):
                self.entries[ip] = str(lladdr)
                self.changed_at[ip] = time.monotonic()

    def get(self, ip: str) -> str | None:
        with self.changed:
            return self.entries.get(str(ipaddress.ip_address(ip)))

    def wait(self, ip: str, mac: str, timeout: float) -> float:
        """Block until the entry for `ip` is `mac`; the monotonic time the event saying so
        arrived (which may be before this call: the caller may have been busy)."""
        key = str(ipaddress.ip_address(ip))
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.entries.get(key) != mac:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.netns}: {ip} wanted at {mac}, is at {self.entries.get(key)}"
                    )
                self.changed.wait(remaining)
            return self.changed_at.get(key, time.monotonic())


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic
    mac: str  # who sent it
    ip: str
    kind: str  # "arp-reply", "garp", "na", "na-unsolicited"


@dataclass
class AnswerCapture(LinkCapture):
    """Every answer about `ips` seen on the client's link (see the module docstring)."""

    netns: str
    ips: frozenset[str]
    link: str = "eth0"
    probe_ip: str = ""  # ask "who has probe_ip" every probe_interval, from the client
    probe_interval: float = 0.05
    max_probes: int = 4000
    answers: list[Answer] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)
    wait: ClassVar[float] = 0.01
    thread_name: ClassVar[str] = "l2-capture"

    def opened(self) -> None:
        self.own_mac = self.sock.getsockname()[4]
        self.own_ip = next(
            a["local"]
            for entry in _netns.ip_json("-4", "address", "show", self.link, netns=self.netns)
            for a in entry.get("addr_info", [])
        )
        self._next_probe = 0.0

    def tick(self, now: float) -> None:
        if self.probe_ip and now >= self._next_probe and len(self.probes) < self.max_probes:
            self.sock.send(packets.arp_request(self.own_mac, self.own_ip, self.probe_ip))
            self.probes.append(now)
            self._next_probe = now + self.probe_interval

    def handle(self, frame: bytes, at: float) -> None:
        arp = packets.parse_arp(frame)
        if arp is not None and str(arp.sender_ip) in self.ips:
            if arp.gratuitous:
                kind = "garp"
            elif arp.operation == packets.ARP_REPLY:
                kind = "arp-reply"
            else:
                return
            self.answers.append(
                Answer(at, packets.format_mac(arp.sender_mac), str(arp.sender_ip), kind)
            )
            return
        nd = packets.parse_nd(frame)
        if (
            nd is not None
            and nd.icmp_type == packets.ICMPV6_NEIGHBOR_ADVERTISEMENT
            and str(nd.target) in self.ips
        ):
            kind = "na" if nd.solicited else "na-unsolicited"
            self.answers.append(Answer(at, packets.format_mac(nd.eth_source), str(nd.target), kind))

    def replies_per_probe(self) -> list[set[str]]:
        """For each probe, the MACs whose ARP replies arrived before the next probe."""
        windows: list[set[str]] = [set() for _ in self.probes]
        replies = [a for a in self.answers if a.kind == "arp-reply" and a.ip == self.probe_ip]
        index = 0
        for reply in replies:
            while index + 1 < len(self.probes) and self.probes[index + 1] <= reply.at:
                index += 1
            if self.probes and self.probes[0] <= reply.at:
                windows[index].add(reply.mac)
        return windows

    def speakers(self) -> list[str]:
        """The MACs that answered, in turn: one entry per run of answers from one MAC."""
        runs: list[str] = []
        for answer in sorted(self.answers, key=lambda a: a.at):
            if not runs or runs[-1] != answer.mac:
                runs.append(answer.mac)
        return runs
