"""eventray.platform.sagas: the saga runtime.

- :mod:`.definition`: what a saga definition is (pure): signals, effects, decisions.
- :mod:`.testing`: given/when/then for saga definitions.
- :mod:`.records`: the saga topic's records (every transition, with the whole new state).
- :mod:`.coordinator`: the coordinator service (the Kafka consumer, the transaction, the
  timer heap, the effects); :mod:`.actor`: its Ray actor shell and the client that reaches it.
- :mod:`.scoring`: the fraud scorer interface and its implementations.
- :mod:`.history`: the Jepsen-style queue checker (lost, duplicated, aborted reads).

Only the pure modules are imported here; the runners import Ray and Kafka when used.
"""

from eventray.platform.sagas.definition import (
    ArmDeadline,
    Ask,
    AskFailed,
    CommandFailed,
    DeadlinePassed,
    Decision,
    Effect,
    LogEvent,
    Replied,
    SagaDefinition,
    SendCommand,
    Signal,
    command_id,
)

__all__ = [
    "ArmDeadline", "Ask", "AskFailed", "CommandFailed", "DeadlinePassed", "Decision", "Effect", "LogEvent",
    "Replied", "SagaDefinition", "SendCommand", "Signal", "command_id",
]
