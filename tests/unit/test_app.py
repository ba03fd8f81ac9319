"""The App API: the public surface, loading by import path, the checks at declaration, and two
apps side by side in one process (no services: codecs, wire, schema, in-memory shards)."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import pytest

import eventray
from eventray.platform.app import load_app
from eventray.platform.composition import Runtime
from eventray.platform.errors import (
    AppInvalid, AppNotFound, DuplicateEventType, NotAnApp, SchemaMergeError, UnknownCommandType,
)
from eventray.platform.eventlog.envelope import Undecodable
from eventray.platform.runtime.shard import ShardService
from eventray.platform.settings import Settings

from memlog import MemoryLog, MemorySnapshots

BANK_PATH = "eventray.serving.bank.app:app"
INVENTORY_PATH = "inventory.app:app"


def test_import_eventray_gives_the_public_surface() -> None:
    for name in ("App", "Command", "Event", "AggregateType", "Projection", "handles", "SagaDefinition",
                 "DomainError", "RuleViolation", "InvalidCommand", "NotFound", "__version__"):
        assert hasattr(eventray, name), name
    assert set(eventray.__all__) >= {"App", "Command", "Event", "AggregateType", "Projection", "handles",
                                     "SagaDefinition"}
    assert not any(n in eventray.__all__ for n in ("Runtime", "ShardService", "CommandBus"))
    assert eventray.__version__ not in ("", None)


# --- loading by import path ----------------------------------------------------------------------


@pytest.fixture()
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("import nothing_of_that_name_exists\n")
    (pkg / "boom.py").write_text("raise RuntimeError('the app module failed')\n")
    (pkg / "notapp.py").write_text("app = 42\nother = 'x'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]


def test_a_module_that_does_not_import_is_a_typed_error(user_package: Path) -> None:
    with pytest.raises(AppNotFound, match="no module named 'nosuchpkg'.*folder that holds the package"):
        load_app("nosuchpkg.app:app")
    with pytest.raises(AppNotFound, match="importing 'userpkg.broken'.*nothing_of_that_name_exists"):
        load_app("userpkg.broken:app")
    with pytest.raises(AppNotFound, match="RuntimeError: the app module failed"):
        load_app("userpkg.boom:app")


def test_a_missing_attribute_or_a_non_app_is_a_typed_error(user_package: Path) -> None:
    with pytest.raises(AppNotFound, match="has no attribute 'nope'"):
        load_app("userpkg.notapp:nope")
    with pytest.raises(NotAnApp, match="userpkg.notapp:app is a int, not an eventray.App"):
        load_app("userpkg.notapp:app")
    with pytest.raises(AppNotFound, match="must look like"):
        load_app(":app")


def test_the_default_app_is_the_bank_and_knows_its_import_path() -> None:
    app = load_app(Settings().app)
    assert app.name == "bank" and app.import_path == BANK_PATH
    assert {a.name for a in app.aggregates} == {"User", "Account"}
    assert "TransferMoney" in app.sagas and "account_balances" in app.projections


# --- checks at declaration -------------------------------------------------------------------------


class Ping(eventray.Command, frozen=True, kw_only=True):
    pass


class Pinged(eventray.Event, frozen=True, kw_only=True):
    pass


def _agg(name: str, commands: tuple = (Ping,), events: tuple = (Pinged,)) -> eventray.AggregateType:
    return eventray.AggregateType(name=name, state_type=msgspec.Struct, decide=lambda s, c: (Pinged(),),
                                  evolve=lambda s, e: s, commands=commands, events=events)


def test_event_class_names_colliding_across_aggregates_are_refused() -> None:
    class Other(eventray.Command, frozen=True, kw_only=True):
        pass

    with pytest.raises(DuplicateEventType, match="'A' and 'B' both have an event named 'Pinged'"):
        eventray.App("two", aggregates=[_agg("A"), _agg("B", commands=(Other,))])


def test_a_command_type_with_no_aggregate_is_refused() -> None:
    class Orphan(eventray.Command, frozen=True, kw_only=True):
        pass

    with pytest.raises(UnknownCommandType, match="names Orphan, but no aggregate of the app handles it"):
        eventray.App("one", aggregates=[_agg("A")],
                     graphql=eventray.GraphQLExtension(commands={Orphan: lambda *a: None}))
    app = eventray.App("one", aggregates=[_agg("A")])
    with pytest.raises(UnknownCommandType):
        app.aggregate_of(Orphan)


def test_other_declaration_mistakes_say_what_to_change() -> None:
    class Stray(eventray.Event, frozen=True, kw_only=True):
        pass

    class Reads(eventray.Projection):
        name = "reads"
        tables = (eventray.Table("t", ("a",)),)
        schema_sql = "CREATE TABLE {schema}.t (a int);"

        @eventray.handles(Stray)
        def on(self, record, out) -> None: ...

    with pytest.raises(AppInvalid, match="projection 'reads' handles Stray, which no aggregate"):
        eventray.App("one", aggregates=[_agg("A")], projections=[Reads])
    with pytest.raises(AppInvalid, match="declares no aggregates"):
        eventray.App("one", aggregates=[])
    with pytest.raises(AppInvalid, match="lower-case identifier"):
        eventray.App("Not A Name", aggregates=[_agg("A")])
    with pytest.raises(AppInvalid, match="two aggregates named 'A'"):
        eventray.App("one", aggregates=[_agg("A"), _agg("A")])
    with pytest.raises(AppInvalid, match="no projection named 'nope'; known: none"):
        eventray.App("one", aggregates=[_agg("A")], event_index=False).projection("nope")


def test_an_sdl_extension_that_does_not_merge_is_a_typed_error() -> None:
    from eventray.serving.api.schema import executable_schema

    bad = eventray.App("one", aggregates=[_agg("A")], graphql=eventray.GraphQLExtension(
        sdl="extend type Nope { x: Int }"))
    with pytest.raises(SchemaMergeError, match="does not merge.*extend type Query"):
        executable_schema(Runtime(bad, Settings()))
    twice = eventray.App("one", aggregates=[_agg("A")], graphql=eventray.GraphQLExtension(
        sdl="type Viewer { x: Int }"))
    with pytest.raises(SchemaMergeError):
        executable_schema(Runtime(twice, Settings()))


def test_an_app_without_an_extension_gets_a_mutation_per_command_for_admins() -> None:
    from graphql import print_schema

    from eventray.serving.api.schema import executable_schema

    sdl = print_schema(executable_schema(Runtime(eventray.App("one", aggregates=[_agg("A")]), Settings())))
    assert "ping(input: PingInput!): CommandResult!" in sdl and "submitCommands" in sdl


# --- two apps in one process ----------------------------------------------------------------------


def test_two_apps_live_side_by_side_in_one_process() -> None:
    from graphql import print_schema

    from eventray.aggregates.account import Deposit, MoneyDeposited
    from eventray.serving.api.schema import executable_schema
    from inventory.domain import AddProduct, ProductAdded

    bank, inv = Runtime.load(Settings(), app=BANK_PATH), Runtime.load(Settings(), app=INVENTORY_PATH)
    assert (bank.topic, inv.topic) == ("eventray.events", "inventory.events")
    assert bank.settings.app == BANK_PATH and inv.settings.app == INVENTORY_PATH
    # each codec reads its own events and refuses the other's
    mine = inv.codec.encode(ProductAdded(name="n", stock=1), aggregate_type="Product", aggregate_id="p",
                            version=1)
    theirs = bank.codec.encode(MoneyDeposited(amount=1, balance_after=1), aggregate_type="Account",
                               aggregate_id="a", version=2)
    assert type(inv.codec.decode(mine).event) is ProductAdded
    assert type(bank.codec.decode(theirs).event) is MoneyDeposited
    assert type(bank.codec.decode(mine)) is Undecodable and type(inv.codec.decode(theirs)) is Undecodable
    # each schema has its own mutations only
    bank_sdl, inv_sdl = print_schema(executable_schema(bank)), print_schema(executable_schema(inv))
    assert "deposit(input: DepositInput!)" in bank_sdl and "addProduct" not in bank_sdl
    assert "addProduct(input: AddProductInput!)" in inv_sdl and "deposit(" not in inv_sdl
    assert "placeOrder" in inv_sdl and "requestTransfer" not in inv_sdl
    # each wire codec carries its own commands
    assert Deposit in bank.wire.command_types and AddProduct not in bank.wire.command_types
    assert AddProduct in inv.wire.command_types and Deposit not in inv.wire.command_types


async def test_two_apps_shards_decide_their_own_commands_in_one_process() -> None:
    from eventray.aggregates.account import Deposit, OpenAccount
    from eventray.platform.runtime.bus import CommandBus, ShardTransport
    from inventory.domain import AddProduct, ReserveStock

    def shard(rt: Runtime, log: MemoryLog) -> ShardService:
        return ShardService(partitions=[0], aggregates=rt.aggregates, make_writer=log.writer,
                            read_partition=lambda p, start: log.read(rt.codec, p, start), snapshots=MemorySnapshots(),
                            encode=rt.codec.encode, topic=rt.topic)

    class Local(ShardTransport):
        def __init__(self, rt: Runtime, svc: ShardService) -> None:
            self.rt, self.svc = rt, svc

        async def submit(self, partition: int, payload: bytes) -> bytes:
            return self.rt.wire.encode_outcomes(await self.svc.submit(partition, self.rt.wire.decode_commands(payload)))

    bank, inv = Runtime.load(Settings(), app=BANK_PATH), Runtime.load(Settings(), app=INVENTORY_PATH)
    bank_log, inv_log = MemoryLog(), MemoryLog()
    bank_svc, inv_svc = shard(bank, bank_log), shard(inv, inv_log)
    await bank_svc.start()
    await inv_svc.start()

    def bus(rt: Runtime, svc: ShardService) -> CommandBus:
        return CommandBus(partitions=1, partition_for=lambda key, n: 0, transport=Local(rt, svc),
                          encode_commands=rt.wire.encode_commands, decode_outcomes=rt.wire.decode_outcomes,
                          known_commands=rt.wire.command_types)

    bank_bus, inv_bus = bus(bank, bank_svc), bus(inv, inv_svc)
    assert (await bank_bus.send(OpenAccount(aggregate_id="a", owner_id="u", currency="EUR"))).ok
    assert (await bank_bus.send(Deposit(aggregate_id="a", amount=5))).version == 2
    assert (await inv_bus.send(AddProduct(aggregate_id="p", name="pen", stock=3))).ok
    refused = await inv_bus.send(ReserveStock(aggregate_id="p", order_id="o", quantity=4))
    assert refused.error_type == "OutOfStock"
    # a command of the other app is refused by type, before it reaches a shard
    wrong = await inv_bus.send(Deposit(aggregate_id="a", amount=1))
    assert wrong.error_code == "UNKNOWN_COMMAND" and "Deposit" in wrong.error_message
    assert len(bank_log.partitions[0]) == 2 and len(inv_log.partitions[0]) == 1
    assert bank_svc.read(0, "a")[0].balance == 5 and inv_svc.read(0, "p")[0].available == 3


def test_a_runtime_resolves_the_topic_from_the_app_unless_settings_name_one() -> None:
    app = load_app(INVENTORY_PATH)
    assert Runtime(app, Settings()).topic == "inventory.events"
    assert Runtime(app, Settings(topic="mine")).topic == "mine"


def test_an_app_built_in_process_runs_here_but_cannot_start_actors() -> None:
    rt = Runtime(eventray.App("local", aggregates=[_agg("A")]), Settings())
    assert rt.topic == "local.events" and rt.codec is not None
    with pytest.raises(AppInvalid, match="not loaded by import path"):
        rt.actor_options()
