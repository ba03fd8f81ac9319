"""Opt-in network namespace for the dev broker, so its traffic can be delayed with tc netem.

With ``EVENTRAY_KAFKA_NETNS_IP=10.a.b.2`` (root only) ``dev up`` runs the broker inside a
network namespace of this stack's own, reached through a veth pair: ``10.a.b.1/30`` on the host
side, ``10.a.b.2/30`` inside. ``eventray chaos delay-kafka`` then adds a netem qdisc to the
host side of that pair only: nothing else on the machine (loopback included) is shaped. The
names are derived from the stack's home, so two stacks never share a namespace, and every
operation checks that the namespace is the one this stack recorded.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from dataclasses import dataclass

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings

from . import _proc
from .state import home_digest

log = logging.getLogger("eventray.devstack.netns")


@dataclass(frozen=True)
class Names:
    """The namespace, the two veth ends and the two addresses of one stack."""

    netns: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str


def names(settings: Settings) -> Names:
    """This stack's names (interface names are at most 15 characters)."""
    if not settings.kafka_netns_ip:
        raise StackError("this stack runs Kafka without a network namespace; set "
                         "EVENTRAY_KAFKA_NETNS_IP (e.g. 10.231.7.2) before `eventray dev up`")
    ns_ip = ipaddress.IPv4Address(settings.kafka_netns_ip)
    net = ipaddress.IPv4Network(f"{ns_ip}/30", strict=False)
    if ns_ip != net.network_address + 2 or not ns_ip.is_private:
        raise StackError(f"EVENTRAY_KAFKA_NETNS_IP={ns_ip} must be the .2 address of a private /30 "
                         "(x.y.z.2 with z.2 divisible by 4 plus 2), e.g. 10.231.7.2")
    digest = home_digest(settings, 8)
    return Names(f"eventray-{digest}", f"erh{digest}", f"ern{digest}",
                 str(net.network_address + 1), str(ns_ip))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _proc.run(["ip", *args], what="setting up the broker's network namespace") if check else \
        subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def exists(n: Names) -> bool:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return any(line.split()[0] == n.netns for line in out.splitlines() if line.strip())


def ensure(settings: Settings) -> list[str]:
    """Create the namespace and veth pair unless they exist; return the ``ip netns exec`` prefix."""
    if not _proc.is_root():
        raise StackError("EVENTRAY_KAFKA_NETNS_IP needs root (ip netns, veth); unset it or run as root")
    _proc.ensure_command("ip", "iproute2", why="to put the dev broker in a network namespace")
    n = names(settings)
    if not exists(n):
        _ip("netns", "add", n.netns)
        _ip("link", "add", n.host_if, "type", "veth", "peer", "name", n.ns_if)
        _ip("link", "set", n.ns_if, "netns", n.netns)
        _ip("addr", "add", f"{n.host_ip}/30", "dev", n.host_if)
        _ip("link", "set", n.host_if, "up")
        _ip("netns", "exec", n.netns, "ip", "addr", "add", f"{n.ns_ip}/30", "dev", n.ns_if)
        _ip("netns", "exec", n.netns, "ip", "link", "set", n.ns_if, "up")
        _ip("netns", "exec", n.netns, "ip", "link", "set", "lo", "up")
        log.info("created network namespace %s (%s <-> %s)", n.netns, n.host_ip, n.ns_ip)
    return ["ip", "netns", "exec", n.netns]


def remove(settings: Settings) -> None:
    """Delete the namespace and its veth pair (after the broker stopped)."""
    if not settings.kafka_netns_ip:
        return
    n = names(settings)
    _ip("link", "del", n.host_if, check=False)
    if exists(n):
        _ip("netns", "del", n.netns, check=False)


def set_delay(settings: Settings, ms: int) -> None:
    """Delay every packet to the broker by ``ms`` (0 removes the delay). Only this stack's veth."""
    n = names(settings)
    if not exists(n):
        raise StackError(f"network namespace {n.netns} does not exist: this stack did not start "
                         "its broker in a namespace (`eventray dev up` with EVENTRAY_KAFKA_NETNS_IP)")
    _proc.ensure_command("tc", "iproute2", why="to delay the broker's traffic (tc netem)")
    if ms <= 0:
        subprocess.run(["tc", "qdisc", "del", "dev", n.host_if, "root"], capture_output=True, check=False)
        return
    proc = subprocess.run(["tc", "qdisc", "replace", "dev", n.host_if, "root", "netem", "delay",
                           f"{ms}ms"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        hint = (" This kernel has no netem qdisc (sch_netem); load it (modprobe sch_netem) or use a "
                "kernel that has it." if "unknown" in proc.stderr.lower() else "")
        raise StackError(f"tc netem on {n.host_if} failed: {proc.stderr.strip()}.{hint}")
