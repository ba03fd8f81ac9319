"""The bus-to-shard wire format refuses one bad command, not its whole batch."""

from __future__ import annotations

from eventray.aggregates.account import Deposit, OpenAccount
from eventray.platform.composition import Runtime
from eventray.platform.runtime.outcome import Outcome
from eventray.serving.api.errors import command_result

BANK = Runtime.load()


def test_a_command_breaking_its_types_constraints_gets_its_own_error_and_the_batch_stands() -> None:
    wire = BANK.wire
    good = Deposit(aggregate_id="a", amount=1)
    bad = OpenAccount(aggregate_id="b", owner_id="no spaces allowed", currency="EUR", command_id="c-bad")
    items = wire.decode_each(wire.encode_commands([good, bad, good]))
    assert items[0] == good and items[2] == good
    refused = items[1]
    assert isinstance(refused, Outcome) and refused.error_code == "VALIDATION"
    assert (refused.command_id, refused.aggregate_id, refused.error_field) == ("c-bad", "b", "owner_id")
    # and the API names the field as its input does
    assert command_result(refused)["field"] == "ownerId"
