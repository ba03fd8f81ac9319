"""A command load for the cluster tests: clients that retry with the same command_id, and the
log checks that prove nothing acknowledged was lost and nothing applied twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from eventray.aggregates import ACCOUNT
from eventray.aggregates.account import Deposit, OpenAccount
from eventray.platform.runtime.outcome import Outcome


@dataclass
class Load:
    """``clients`` accounts, each deposited into by one client, one command at a time."""

    bus: object
    clients: int = 16
    acked: dict[str, Outcome] = field(default_factory=dict)
    deposited: Counter = field(default_factory=Counter)
    retries: int = 0
    #: (monotonic time, ok) of every outcome, to measure how long the service was away
    timeline: list[tuple[float, bool]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, command) -> Outcome:
        """Send until not retryable, always with the same command_id."""
        for attempt in range(600):
            out = await self.bus.send(command)
            self.timeline.append((time.monotonic(), out.ok))
            if not out.retryable:
                assert out.ok, out
                self.acked[command.command_id] = out
                return out
            self.retries += 1
            await asyncio.sleep(min(0.02 * (attempt + 1), 0.25))
        raise AssertionError(f"{command.command_id} still retryable: {out}")

    async def client(self, index: int) -> None:
        account = f"load-{index}"
        await self.send(OpenAccount(aggregate_id=account, owner_id="u", currency="EUR"))
        while not self.stop.is_set():
            out = await self.send(Deposit(aggregate_id=account, amount=1))
            self.deposited[account] += 1  # ok, first time or a duplicate of an applied retry
            await asyncio.sleep(0.005)

    def start(self) -> list[asyncio.Task]:
        return [asyncio.ensure_future(self.client(i)) for i in range(self.clients)]

    def longest_gap_s(self, after: float) -> float:
        """The longest time without an ok outcome, from ``after`` on."""
        after = max(after, min((t for t, _ in self.timeline), default=after))
        oks = sorted(t for t, ok in self.timeline if ok and t >= after)
        return max((b - a for a, b in zip([after, *oks], oks)), default=0.0)


def read_log(rt) -> list:
    return [r for p in range(rt.settings.partitions) for r in rt.read_decoded(p, 0)]


def assert_log_exact(rt, load: Load) -> dict[str, object]:
    """Every acknowledged command is in the log once; versions are gapless (one writer each)."""
    records = read_log(rt)
    per_command = Counter(r.envelope.command_id for r in records)
    for cid, out in load.acked.items():
        if out.duplicate:  # a resend of a command applied before the failure: it is in the log
            assert per_command[cid] >= 1, f"command {cid} acknowledged as applied but not in the log"
        else:
            assert per_command[cid] == len(out.events), f"command {cid}: {per_command[cid]} events in the log"
    versions: dict[str, list[int]] = defaultdict(list)
    folded: dict[str, object] = {}
    for r in records:
        versions[r.envelope.aggregate_id].append(r.envelope.version)
        folded[r.envelope.aggregate_id] = ACCOUNT.evolve(folded.get(r.envelope.aggregate_id), r.event)
    for agg, vs in versions.items():
        assert vs == list(range(1, len(vs) + 1)), f"{agg}: versions {vs[:20]}... (two writers?)"
    for agg, n in load.deposited.items():
        assert folded[agg].balance == n, f"{agg}: balance {folded[agg].balance}, {n} acknowledged deposits"
    return folded
