"""The batch-enrichment hook and the alerts projection, with no services.

A fake store stands in for PostgreSQL: it keeps the keyed rows and the offset a batch
transaction sees, so the runner's contract (one ``enrich`` per batch, inside the batch's
transaction, state read as of the stored offset, results stored with the batch) is checked
without a database.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from eventray.aggregates.account import AccountOpened, MoneyDeposited, MoneyWithdrawn, TransferDebited
from eventray.platform.composition import Runtime

from eventray.platform.ml.datasets import simulate_movements
from eventray.platform.ml.features import MovementFeatures
from eventray.platform.projections import BatchWrites, Projection, Table, handles
from eventray.platform.projections.enrich import StaleRunner
from eventray.platform.projections.runner import PartitionRunner
from eventray.projections import Alerts
from eventray.serving.models.alerts import Alert

BANK = Runtime.load()


def records(*items: tuple[str, int, object], start: int = 0, ts: float = 1_700_000_000_000) -> list:
    codec = BANK.codec
    return [(start + i, agg.encode(), codec.encode(ev, aggregate_type="Account", aggregate_id=agg, version=v,
                                                 timestamp=ts + 1000 * (start + i)))
            for i, (agg, v, ev) in enumerate(items)]


class FakeCursor:
    """Answers the one SELECT :meth:`EnrichBatch.rows` sends, from the fake store's rows."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self._result: list[tuple[Any, ...]] = []

    def execute(self, stmt: Any, params: tuple[Any, ...]) -> FakeCursor:
        keys = params[0]
        self._result = [tuple(self.store.rows[k].values()) for k in keys if k in self.store.rows]
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._result


class FakeStore:
    """Offsets, dead letters and the keyed table ``state`` of one projection, in memory."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self.offset = 0
        self.rows: dict[Any, dict[str, Any]] = {}
        self.appended: list[tuple[Any, ...]] = []
        self.dead: list[Any] = []
        self.transactions = 0

    def load_offsets(self, name: str, version: int) -> dict[int, int]:
        return {0: self.offset}

    @contextlib.contextmanager
    def batch_transaction(self, **_: Any):
        self.transactions += 1
        snapshot = (self.offset, {k: dict(v) for k, v in self.rows.items()}, list(self.appended), list(self.dead))
        try:
            yield FakeCursor(self), self.offset
        except BaseException:
            self.offset, self.rows, self.appended, self.dead = snapshot  # rolled back
            raise

    def write_batch(self, cur: Any, *, writes: BatchWrites, next_offset: int, dead: Any, **_: Any) -> None:
        for buf in writes._tables.values():
            self.appended += buf.appended
            for key, row in buf.created.items():
                self.rows[key[0]] = {c: row[c] for c in buf.spec.columns}
            for key, changes in buf.updated.items():
                self.rows[key[0]].update(changes)
        self.dead += list(dead)
        self.offset = next_offset

    def apply_batch(self, **kw: Any) -> None:
        self.write_batch(None, **kw)


def runner_for(projection: Projection, store: FakeStore) -> PartitionRunner:
    runner = PartitionRunner(projection=projection, store=store, decode_many=BANK.codec.decode_many,
                             open_reader=lambda p: None, name=projection.name, version=1, schema="s", partition=0)
    runner.next_offset = store.offset
    return runner


class Running(Projection):
    """Counts deposits per account from a running total ``enrich`` reads and adds to."""

    name = "running"
    tables = (Table("totals", ("account_id", "total"), key=("account_id",)), Table("seen", ("account_id", "total")))
    schema_sql = "CREATE TABLE {schema}.totals ();"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def enrich(self, batch: Any) -> list[Any]:
        self.calls.append(len(batch.records))
        totals = {k: v["total"] for k, v in batch.rows("totals", [r.envelope.aggregate_id for r in batch.records]).items()}
        out = []
        for r in batch.records:
            if r.event.amount == 13:  # the step cannot handle this one: left out
                out.append(None)
                continue
            existed = r.envelope.aggregate_id in totals
            totals[r.envelope.aggregate_id] = totals.get(r.envelope.aggregate_id, 0) + r.event.amount
            out.append((totals[r.envelope.aggregate_id], existed))
        return out

    @handles(MoneyDeposited)
    def deposited(self, record: Any, out: BatchWrites) -> None:
        total, existed = out.enriched(record)
        out.append("seen", (record.envelope.aggregate_id, total))
        if existed:
            out.update("totals", record.envelope.aggregate_id, total=total)
        else:
            out.create("totals", {"account_id": record.envelope.aggregate_id, "total": total})


def test_enrich_runs_once_per_batch_inside_it_and_sees_the_stored_state() -> None:
    proj, store = Running(), FakeStore(("account_id", "total"))
    runner = runner_for(proj, store)
    assert runner.process(records(("a", 1, AccountOpened(owner_id="u", currency="EUR")),
                                  ("a", 2, MoneyDeposited(amount=5, balance_after=5)),
                                  ("a", 3, MoneyDeposited(amount=7, balance_after=12))))
    assert runner.process(records(("a", 4, MoneyDeposited(amount=1, balance_after=13)),
                                  ("b", 1, MoneyDeposited(amount=2, balance_after=2)), start=3))
    assert proj.calls == [2, 2] and store.transactions == 2  # AccountOpened is not handled: not enriched
    assert store.rows == {"a": {"account_id": "a", "total": 13}, "b": {"account_id": "b", "total": 2}}
    assert store.appended == [("a", 5), ("a", 12), ("a", 13), ("b", 2)] and store.offset == 5


def test_a_record_enrich_leaves_out_is_dead_lettered() -> None:
    proj, store = Running(), FakeStore(("account_id", "total"))
    runner = runner_for(proj, store)
    assert runner.process(records(("a", 1, MoneyDeposited(amount=13, balance_after=13)),
                                  ("a", 2, MoneyDeposited(amount=1, balance_after=14))))
    assert [d.offset for d in store.dead] == [0] and "no enrichment" in store.dead[0].reason
    assert store.appended == [("a", 1)] and store.offset == 2


def test_a_failing_enrich_fails_the_batch_and_writes_nothing() -> None:
    class Down(Running):
        name = "down"

        async def enrich(self, batch: Any) -> list[Any]:
            raise ConnectionError("model deployment away")

    store = FakeStore(("account_id", "total"))
    runner = runner_for(Down(), store)
    with pytest.raises(ConnectionError):
        runner.process(records(("a", 1, MoneyDeposited(amount=5, balance_after=5))))
    assert store.offset == 0 and not store.appended and runner.next_offset == 0 and runner.batches == 0


def test_a_runner_behind_the_stored_offset_is_stale() -> None:
    store = FakeStore(("account_id", "total"))
    runner = runner_for(Running(), store)
    store.offset = 7  # another incarnation committed meanwhile
    with pytest.raises(StaleRunner):
        runner.process(records(("a", 1, MoneyDeposited(amount=5, balance_after=5))))
    assert not store.appended


def test_features_resume_from_stored_state_exactly() -> None:
    movements = [lm.movement for lm in simulate_movements(seed=7, accounts=6, days=10)]
    whole_rows, whole_z = MovementFeatures().observe_all(movements)
    stored: dict[str, Any] = {}
    parts_rows, parts_z = [], []
    for i in range(0, len(movements), 17):  # batches of 17, state stored and reloaded between them
        chunk = movements[i:i + 17]
        f = MovementFeatures()
        for account, state in stored.items():
            f.load(account, state)
        rows, zs = f.observe_all(chunk)
        parts_rows.append(rows)
        parts_z.append(zs)
        stored.update({m.account_id: f.state(m.account_id) for m in chunk})
    assert np.array_equal(np.concatenate(parts_rows), whole_rows)
    assert np.array_equal(np.concatenate(parts_z), whole_z)


class FakeScorer:
    """Flags movements over 1000.00 as ``model``, like the anomaly deployment would, no Serve."""

    def __init__(self) -> None:
        self.calls = 0

    async def score(self, movements: list[Any], *, features: MovementFeatures | None = None) -> list[Alert]:
        self.calls += 1
        _, zs = features.observe_all(movements)
        return [Alert(m.account_id, m.at, m.amount, 1.0 if m.amount > 100_000 else -1.0, float(z),
                      "model" if m.amount > 100_000 else "", "1") for m, z in zip(movements, zs)]


def test_alerts_projection_flags_and_keeps_feature_state_in_the_read_model() -> None:
    scorer = FakeScorer()
    store = FakeStore(Alerts.tables[1].columns)
    runner = runner_for(Alerts(scorer=scorer), store)
    assert runner.process(records(("a", 1, MoneyDeposited(amount=500, balance_after=500)),
                                  ("a", 2, MoneyWithdrawn(amount=200, balance_after=300)),
                                  ("b", 1, MoneyDeposited(amount=900_000, balance_after=900_000))))
    assert runner.process(records(("b", 2, TransferDebited(transfer_id="t", amount=1, balance_after=899_999,
                                                           counterparty="a")), start=3))
    assert scorer.calls == 2
    assert [(a[0], a[2], a[3], a[6]) for a in store.appended] == [("b", "deposit", 900_000, "model")]
    assert store.rows["a"]["n"] == 2 and len(store.rows["a"]["recent"]) == 2
    assert store.rows["b"]["n"] == 2 and store.rows["b"]["last_at"] == 1_700_000_003.0


# --- the support inbox -------------------------------------------------------------------------


class FakeTextModels:
    """The sentiment, topics and entities deployments, answering from the texts themselves, no Serve.

    A text holding ``REFUSE`` is refused with ``EmptyText`` (index set), as a deployment refuses a
    text without a word; ``down`` makes every call fail as an unreachable deployment does."""

    def __init__(self, *, down: bool = False) -> None:
        self.calls: list[tuple[str, int]] = []
        self.down = down

    async def predict(self, model: str, payload: Any, *, version: str | None = None) -> dict[str, Any]:
        from eventray.platform.errors import EmptyText, ServiceUnavailable

        texts = [payload] if isinstance(payload, str) else list(payload)
        self.calls.append((model, len(texts)))
        if self.down:
            raise ServiceUnavailable(f"{model} is not deployed")
        for i, t in enumerate(texts):
            if "REFUSE" in t:
                raise EmptyText(f"text {i} is empty or has no word to classify", field="text", index=i)
        if model == "entities":
            return {"entities": [[{"text": w, "label": "PERSON", "start": t.index(w), "end": t.index(w) + len(w)}
                                  for w in t.split() if w.istitle()] for t in texts], "version": "e1"}
        unhappy = np.array([float("refund" in t) for t in texts])
        probabilities = np.stack([unhappy * 0.8 + 0.1, 0.9 - unhappy * 0.8], axis=1)
        if model == "sentiment":
            return {"label": np.array(["negative" if u else "positive" for u in unhappy], dtype=object),
                    "probabilities": probabilities, "keywords": [[(t.split()[0].lower(), 0.5)] for t in texts],
                    "version": "s1"}
        return {"label": np.array(["business" if "card" in t else "tech" for t in texts], dtype=object),
                "probabilities": probabilities, "version": "t1"}


def user_records(*bodies: str, start: int = 0, ts: float = 1_700_000_000_000) -> list:
    from eventray.aggregates.user import SupportMessageSent

    codec = BANK.codec
    return [(start + i, b"u1", codec.encode(SupportMessageSent(body=body), aggregate_type="User",
                                            aggregate_id="u1", version=start + i + 2, timestamp=ts + 1000 * i))
            for i, body in enumerate(bodies)]


def inbox_fold(records: list, models: FakeTextModels) -> list[tuple[Any, ...]]:
    """The reference: each message analysed on its own, straight from the log, no runner."""
    import asyncio
    import json

    from eventray.serving.models.resolvers import analyze_texts

    rows = []
    for record in BANK.codec.decode_many(records, partition=0):
        (a,) = asyncio.run(analyze_texts(models, [record.event.body]))  # type: ignore[arg-type]
        rows.append((f"u1/{record.envelope.version}", record.event.body, a["topic"]["label"],
                     a["sentiment"]["label"], json.dumps(a["entities"]), record.offset))
    return rows


def test_the_support_inbox_is_a_fold_of_the_log_analysed_in_one_request_per_model() -> None:
    import json

    from eventray.projections import SupportInbox
    from eventray.serving.models import TextAnalyser

    models = FakeTextModels()
    store = FakeStore(SupportInbox.tables[0].columns)
    runner = runner_for(SupportInbox(analyser=TextAnalyser(client=models)), store)  # type: ignore[arg-type]
    batch = user_records("My card was charged twice. Please refund me, said Ada in London.",
                         "The new app is great. Thanks Grace!", "Where is my statement? It was due Monday.")
    assert runner.process(batch)
    assert sorted(models.calls) == [("entities", 3), ("sentiment", 3), ("topics", 3)]  # a request each, not 9
    got = [(r[0], r[3], r[4], r[6], json.dumps(json.loads(r[8])), r[14]) for r in store.appended]
    models.calls.clear()
    assert got == inbox_fold(batch, models)
    first = store.appended[0]
    assert first[1] == "u1" and first[5] == pytest.approx(0.9) and first[12] is None
    assert json.loads(first[11]) == {"sentiment": "s1", "topics": "t1", "entities": "e1"}
    assert json.loads(first[10]) == ["My card was charged twice.", "Please refund me, said Ada in London."]


def test_a_refused_text_is_stored_with_its_error_and_the_rest_of_its_chunk_is_analysed() -> None:
    import json

    from eventray.projections import SupportInbox
    from eventray.serving.models import TextAnalyser

    models = FakeTextModels()
    store = FakeStore(SupportInbox.tables[0].columns)
    runner = runner_for(SupportInbox(analyser=TextAnalyser(client=models, chunk=2)), store)  # type: ignore[arg-type]
    assert runner.process(user_records("Hello Ada, my card is blocked.", "REFUSE this one", "Thanks, all good now."))
    rows = {r[0]: r for r in store.appended}
    assert len(rows) == 3 and not store.dead
    refused = rows["u1/3"]
    assert refused[12] == "MODEL_INPUT_EMPTY_TEXT" and refused[4] is None and json.loads(refused[8]) == []
    assert rows["u1/2"][12] is None and rows["u1/2"][4] == "business"
    assert rows["u1/4"][12] is None and rows["u1/4"][6] == "positive"


def test_a_model_that_is_down_fails_the_batch_and_stores_nothing() -> None:
    from eventray.projections import SupportInbox
    from eventray.serving.models import TextAnalyser

    store = FakeStore(SupportInbox.tables[0].columns)
    runner = runner_for(SupportInbox(analyser=TextAnalyser(client=FakeTextModels(down=True))), store)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="not deployed"):
        runner.process(user_records("Hello, my card is blocked."))
    assert store.appended == [] and store.offset == 0 and not store.dead


def test_an_inbox_without_an_analyser_says_how_to_build_it() -> None:
    from eventray.platform.errors import ConfigurationError
    from eventray.projections import SupportInbox

    store = FakeStore(SupportInbox.tables[0].columns)
    with pytest.raises(ConfigurationError, match="SupportInbox.build"):
        runner_for(SupportInbox(), store).process(user_records("Hello, my card is blocked."))
