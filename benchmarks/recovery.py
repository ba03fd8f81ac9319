"""Shard recovery time, with snapshots and from the whole log, and resident bytes per aggregate.

    python -m benchmarks.recovery [--quick]

Sets up one partition holding 1,000,000 events over 100,000 account aggregates (``--quick``:
100,000 over 10,000), written through the real transactional writer. Then, each in a fresh
process so that resident memory is its own:

* ``full``: a shard recovers by replaying the whole partition;
* ``snapshot``: a shard recovers from PostgreSQL snapshots plus the tail (the snapshots are
  written by a full recovery followed by a snapshot flush, the way a running shard takes them).

Recovery is the shard's own procedure (fence with init_transactions, load snapshots, replay
to the last stable offset), timed until the shard is ready to take commands. Each is repeated
and the median reported. Writes benchmarks/results/recovery.json.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import uuid

from benchmarks._common import median, parser, print_table, write_results

EVENTS_PER_AGGREGATE = 10


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def populate(rt, aggregates: int, progress) -> int:
    """Write AccountOpened + 9 deposits per aggregate, interleaved, to partition 0."""
    from eventray.aggregates.account import AccountOpened, MoneyDeposited

    codec = rt.codec
    rt.ensure_topic()
    writer = rt.build_writer(0)
    writer.init()
    batch: list[tuple[bytes, bytes]] = []
    written = 0
    for version in range(1, EVENTS_PER_AGGREGATE + 1):
        for i in range(aggregates):
            agg = f"acct-{i:07d}"
            event = (AccountOpened(owner_id=f"owner-{i % 1000}", currency="EUR") if version == 1
                     else MoneyDeposited(amount=10, balance_after=10 * (version - 1)))
            batch.append((agg.encode(), codec.encode(event, event_id=f"{agg}:{version}", aggregate_type="Account",
                                                     aggregate_id=agg, version=version,
                                                     command_id=f"cmd-{agg}-{version}")))
            if len(batch) >= 5000:
                writer.append_batch(batch)
                written += len(batch)
                progress(len(batch))
                batch = []
    if batch:
        writer.append_batch(batch)
        written += len(batch)
        progress(len(batch))
    writer.close()
    return written


async def _recover(rt, mode: str) -> dict:
    service = rt.build_shard_service([0])
    if mode == "full":
        service._snapshots = _NoSnapshots()
    gc.collect()
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    await service.start()
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss1 = _rss_bytes()
    described = service.describe()["partitions"][0]
    if mode == "prepare":
        await service.flush_snapshots()
    await service.stop()
    return {"mode": mode, "recovery_s": elapsed, "aggregates": described["aggregates"],
            "rss_delta_bytes": rss1 - rss0, "next_offset": described["next_offset"]}


class _NoSnapshots:
    def load_checkpoint(self, topic, partition):
        return None

    def load_partition(self, topic, partition):
        return []

    def save(self, *args, **kwargs):
        pass


def _child(mode: str, settings_json: str) -> None:
    from eventray.platform.composition import Runtime
    from eventray.platform.settings import Settings

    rt = Runtime.load(Settings.model_validate_json(settings_json))
    print(json.dumps(asyncio.run(_recover(rt, mode))))


def _run_child(mode: str, rt) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.recovery", "--child", mode],
                         input=rt.settings.model_dump_json(), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"recovery child ({mode}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--child", choices=["full", "snapshot", "prepare"], help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        _child(args.child, sys.stdin.read())
        return
    aggregates = 10_000 if args.quick else 100_000
    repeats = args.repeats or 3

    from rich.progress import Progress

    from eventray.platform.composition import Runtime
    from eventray.platform.devstack import stack
    from eventray.platform.devstack.state import effective_settings

    stack.up()
    settings = effective_settings().model_copy(update={
        "topic": f"bench-recovery-{uuid.uuid4().hex[:8]}", "partitions": 1, "shards": 1,
    })
    rt = Runtime.load(settings)
    with Progress() as bar:
        task = bar.add_task("writing events", total=aggregates * EVENTS_PER_AGGREGATE)
        events = populate(rt, aggregates, lambda n: bar.advance(task, n))
        rec = bar.add_task("recoveries", total=1 + 2 * repeats)
        prepared = _run_child("prepare", rt)  # full replay, then a snapshot of every aggregate
        bar.advance(rec)
        runs = {"full": [], "snapshot": []}
        for _ in range(repeats):
            for mode in ("full", "snapshot"):
                runs[mode].append(_run_child(mode, rt))
                bar.advance(rec)
    for mode, rs in runs.items():
        for r in rs:
            if r["aggregates"] != aggregates:
                raise RuntimeError(f"{mode} recovery found {r['aggregates']} aggregates, expected {aggregates}")
    rows = [{"mode": mode, "recovery_s": median([r["recovery_s"] for r in rs]),
             "bytes_per_aggregate": median([r["rss_delta_bytes"] / r["aggregates"] for r in rs]),
             "runs": [round(r["recovery_s"], 3) for r in rs]} for mode, rs in runs.items()]
    result = {
        "recovery_s_snapshot": rows[1]["recovery_s"],
        "recovery_s_full": rows[0]["recovery_s"],
        "bytes_per_aggregate": rows[1]["bytes_per_aggregate"],
        "bytes_per_aggregate_full": rows[0]["bytes_per_aggregate"],
        "events": events,
        "aggregates": aggregates,
        "quick": args.quick,
        "scaled_down_10x": args.quick,
        "repeats": repeats,
        "dedupe_window": settings.dedupe_window,
        "rows": rows,
        "prepare": prepared,
    }
    path = write_results("recovery", result)
    print_table("shard recovery (median)", rows, ["mode", "recovery_s", "bytes_per_aggregate"])
    print(f"{events:,} events over {aggregates:,} aggregates; results in {path}")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
