"""Field checks shared by the aggregates. Private: the public surface is each aggregate's."""

from __future__ import annotations

import re

from eventray.platform.errors import InvalidCommand

# Compiled once: these run on the shard's hot path.
# C0/C1 controls, line/paragraph separators and bidi overrides/isolates (text spoofing).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# The same, but newlines and tabs are allowed (multi-line free text such as a bio).
_CONTROL_MULTILINE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def text(
    value: str,
    *,
    field: str,
    max_length: int,
    error: type[InvalidCommand] = InvalidCommand,
    required: bool = True,
    multiline: bool = False,
) -> str:
    """``value`` stripped, or ``error`` when it is empty, too long or holds control characters.

    Args:
        value: the raw field value.
        field: the field's name, for the message and ``error.details["field"]``.
        max_length: the most characters allowed after stripping.
        error: the ``InvalidCommand`` subclass to raise.
        required: whether an empty (after stripping) value is refused.
        multiline: whether newlines and tabs are allowed.
    """
    if type(value) is not str:
        raise error(f"{field} must be a string", field=field)
    stripped = value.strip()
    if required and not stripped:
        raise error(f"{field} must not be empty", field=field)
    if len(stripped) > max_length:
        raise error(f"{field} must be at most {max_length} characters", field=field)
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(stripped):
        raise error(f"{field} must not contain control characters", field=field)
    return stripped
