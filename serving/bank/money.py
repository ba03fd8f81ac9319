"""The bank's ``Money`` scalar: integer minor units within a signed 64-bit range."""

from __future__ import annotations

from typing import Any

from ariadne import ScalarType

from eventray.platform.errors import InvalidCommand

__all__ = ["money_scalar", "parse_money", "serialize_money"]

INT64_MAX = 2**63 - 1


def parse_money(value: Any) -> int:
    """``Money`` scalar input: an integer, or a string of digits, within a signed 64-bit range."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidCommand("amount must be an integer number of minor units", field="amount")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit() or len(text) > 20:
            raise InvalidCommand(f"amount {value[:24]!r} is not an integer", field="amount")
        value = int(text)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise InvalidCommand("amount is out of the 64-bit range", field="amount")
    return value


def serialize_money(value: int) -> int | str:
    """Within GraphQL's 53-bit-safe range: a number; beyond: a string (JSON clients lose digits)."""
    return value if -(2**53) < value < 2**53 else str(value)


def _money_literal(node: Any, variables: Any = None) -> int:
    from graphql import IntValueNode, StringValueNode

    if isinstance(node, IntValueNode | StringValueNode):
        return parse_money(node.value if isinstance(node, StringValueNode) else int(node.value))
    return parse_money(None)


money_scalar = ScalarType("Money", serializer=serialize_money, value_parser=parse_money)
money_scalar.set_literal_parser(_money_literal)
