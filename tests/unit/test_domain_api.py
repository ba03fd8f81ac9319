"""The domain API itself: given/when/then (platform/testing.py), AggregateType, the registry."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import msgspec
import pytest

from eventray.aggregates import ACCOUNT, AGGREGATES, ALL_EVENT_TYPES, USER
from eventray.aggregates.account import (
    AccountOpened,
    AccountState,
    Deposit,
    MoneyDeposited,
    MoneyWithdrawn,
    Withdraw,
)
from eventray.aggregates.account import Events as AccountEvents
from eventray.aggregates.user import ChangeEmail, EmailChanged, UserRegistered, UserState
from eventray.aggregates.user import Events as UserEvents
from eventray.platform.domain import AggregateType, Command, Event, event_tag
from eventray.platform.errors import InvalidCommand, NotFound, RuleViolation
from eventray.platform.testing import ScenarioFailed, scenario

ID = "acct-1"
OPENED = AccountOpened(owner_id="user-1", currency="EUR")
FUNDED = MoneyDeposited(amount=100, balance_after=100)

# --- then() ----------------------------------------------------------------------------------


def test_then_names_the_event_and_field_that_differed() -> None:
    with pytest.raises(ScenarioFailed) as info:
        scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=5)).then(
            MoneyDeposited(amount=5, balance_after=6)
        )
    message = str(info.value)
    assert "event #0" in message
    assert "MoneyDeposited" in message
    assert "balance_after: expected 6, got 5" in message
    assert "amount" not in message.replace("balance_after", "")  # only the differing field


def test_then_names_a_differing_event_type() -> None:
    with pytest.raises(ScenarioFailed, match=r"event #0 differs: expected MoneyWithdrawn, got MoneyDeposited"):
        scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=5)).then(
            MoneyWithdrawn(amount=5, balance_after=5)
        )


def test_then_reports_a_missing_event() -> None:
    with pytest.raises(ScenarioFailed, match=r"expected 2 event\(s\), got 1"):
        scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=5)).then(
            MoneyDeposited(amount=5, balance_after=5), MoneyDeposited(amount=5, balance_after=10)
        )


def test_then_reports_an_unexpected_event() -> None:
    with pytest.raises(ScenarioFailed, match=r"expected 0 event\(s\), got 1: \['MoneyDeposited'\]"):
        scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=5)).then()


def test_then_returns_the_state_after_given_and_emitted_events() -> None:
    state = scenario(ACCOUNT).given(OPENED, FUNDED).when(Withdraw(aggregate_id=ID, amount=40)).then(
        MoneyWithdrawn(amount=40, balance_after=60)
    )
    assert state == AccountState(owner_id="user-1", currency="EUR", balance=60)


def test_then_fails_when_the_command_raises() -> None:
    with pytest.raises(NotFound):
        scenario(ACCOUNT).when(Deposit(aggregate_id=ID, amount=5)).then()


# --- raises() --------------------------------------------------------------------------------


def test_raises_returns_the_error() -> None:
    err = scenario(ACCOUNT).when(Deposit(aggregate_id=ID, amount=5)).raises(NotFound)
    assert isinstance(err, NotFound)


def test_raises_accepts_a_base_class() -> None:
    scenario(ACCOUNT).given(OPENED).when(Withdraw(aggregate_id=ID, amount=5)).raises(RuleViolation)


def test_raises_with_the_wrong_error_fails() -> None:
    with pytest.raises(ScenarioFailed, match=r"expected InvalidCommand, got NotFound") as info:
        scenario(ACCOUNT).when(Deposit(aggregate_id=ID, amount=5)).raises(InvalidCommand)
    assert isinstance(info.value.__cause__, NotFound)


def test_raises_when_events_are_emitted_fails() -> None:
    with pytest.raises(ScenarioFailed, match=r"expected NotFound, but the command emitted \['MoneyDeposited'\]"):
        scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=5)).raises(NotFound)


def test_raises_when_nothing_is_emitted_fails() -> None:
    with pytest.raises(ScenarioFailed, match=r"but the command emitted \[\]"):
        scenario(USER).given(UserRegistered(name="A", email="a@b.co")).when(
            ChangeEmail(aggregate_id="u", email="a@b.co")
        ).raises(RuleViolation)


# --- when() ----------------------------------------------------------------------------------


def test_when_refuses_a_command_of_another_aggregate() -> None:
    with pytest.raises(ScenarioFailed, match="User does not handle Deposit"):
        scenario(USER).when(Deposit(aggregate_id=ID, amount=5))


def test_then_without_when_fails() -> None:
    with pytest.raises(ScenarioFailed, match=r"call \.when"):
        scenario(USER).given().then()


# --- AggregateType ---------------------------------------------------------------------------


class Counted(Event, kw_only=True):  # type: ignore[call-arg]
    by: int


class Count(Command, kw_only=True):  # type: ignore[call-arg]
    by: int


class Counter(msgspec.Struct, frozen=True):
    total: int


def _evolve(state: Counter | None, event: Counted) -> Counter:
    return Counter((state.total if state else 0) + event.by)


COUNTER: AggregateType[Counter] = AggregateType(
    name="Counter",
    state_type=Counter,
    decide=lambda state, command: (Counted(by=command.by),),
    evolve=_evolve,
    commands=(Count,),
    events=(Counted,),
)


def test_fold_applies_events_in_order_from_none() -> None:
    assert COUNTER.fold([]) is None
    assert COUNTER.fold([Counted(by=1), Counted(by=2), Counted(by=3)]) == Counter(6)


def test_fold_continues_from_a_state() -> None:
    assert COUNTER.fold([Counted(by=4)], Counter(10)) == Counter(14)


def test_fold_of_real_aggregates() -> None:
    assert ACCOUNT.fold([OPENED, FUNDED]) == AccountState(
        owner_id="user-1", currency="EUR", balance=100
    )
    assert USER.fold(
        [
            UserRegistered(name="A", email="a@b.co"),
            EmailChanged(email="c@d.ef", previous_email="a@b.co"),
        ]
    ) == UserState(name="A", email="c@d.ef")


def test_handles() -> None:
    assert COUNTER.handles(Count(aggregate_id="c", by=1))
    assert not COUNTER.handles(Deposit(aggregate_id="c", amount=1))
    assert ACCOUNT.handles(Deposit(aggregate_id="c", amount=1))


def test_an_aggregate_must_declare_commands_and_events() -> None:
    with pytest.raises(ValueError, match="must declare"):
        AggregateType(
            name="Empty", state_type=Counter, decide=COUNTER.decide, evolve=_evolve,
            commands=(), events=(Counted,),
        )


# --- the aggregates registry and the codec's view of it --------------------------------------


def test_registry() -> None:
    assert AGGREGATES == (USER, ACCOUNT)
    assert [a.name for a in AGGREGATES] == ["User", "Account"]
    assert set(ALL_EVENT_TYPES) == set(USER.events) | set(ACCOUNT.events)
    # no event type is listed twice (5 user events, 3 KYC events, 6 account events, 5 transfer events)
    assert len(ALL_EVENT_TYPES) == len(set(ALL_EVENT_TYPES)) == 19


def test_event_tags_are_unique_class_names() -> None:
    tags = [event_tag(t) for t in ALL_EVENT_TYPES]
    assert tags == [t.__name__ for t in ALL_EVENT_TYPES]
    assert len(set(tags)) == len(tags)


def test_events_union_matches_declared_events() -> None:
    assert set(UserEvents.__args__) == set(USER.events)  # type: ignore[attr-defined]
    assert set(AccountEvents.__args__) == set(ACCOUNT.events)  # type: ignore[attr-defined]


SAMPLES: list[Event] = [
    UserRegistered(name="Ada", email="ada@example.com"),
    EmailChanged(email="b@c.de", previous_email="ada@example.com"),
    OPENED,
    FUNDED,
    MoneyWithdrawn(amount=1, balance_after=99),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_events_round_trip_through_msgpack_by_tag(event: Event) -> None:
    decoder = msgspec.msgpack.Decoder(UserEvents | AccountEvents)  # type: ignore[operator]
    assert decoder.decode(msgspec.msgpack.encode(event)) == event


def test_states_round_trip_for_snapshots() -> None:
    for aggregate, events in ((USER, SAMPLES[:2]), (ACCOUNT, SAMPLES[2:])):
        state = aggregate.fold(events)
        blob = msgspec.msgpack.encode(state)
        assert msgspec.msgpack.decode(blob, type=aggregate.state_type) == state


def test_events_and_commands_are_frozen() -> None:
    with pytest.raises(AttributeError):
        FUNDED.amount = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Deposit(aggregate_id=ID, amount=1).amount = 2  # type: ignore[misc]


# --- purity: the domain imports only the stdlib, msgspec and the platform's domain API -------

ALLOWED_THIRD_PARTY = {"msgspec"}
ALLOWED_EVENTRAY = {"eventray.platform.domain", "eventray.platform.errors"}


def test_aggregates_are_pure() -> None:
    root = Path(__file__).resolve().parents[2] / "aggregates"
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside aggregates/ itself
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = (
                    top in sys.stdlib_module_names
                    or top in ALLOWED_THIRD_PARTY
                    or name in ALLOWED_EVENTRAY
                    or name.startswith("eventray.aggregates")
                )
                assert ok, f"{path.name} imports {name}: the domain must stay pure"
