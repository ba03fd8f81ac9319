"""How the saga runtime runs, read from ``EVENTRAY_SAGA_*`` environment variables.

These are the platform's settings, the same for every saga; what one saga does (timeouts,
retries, limits) is its definition's policy, built by the app's factory (``eventray.Saga``).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SagaSettings(BaseSettings):
    """How sagas run. Every field can be set with ``EVENTRAY_SAGA_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="EVENTRAY_SAGA_", extra="forbid", frozen=True)

    partitions: int = Field(default=2, ge=1, description="the saga topic's partitions, fixed when it is created "
                            "(a saga id's partition must never change); the most coordinators that can share work")
    coordinators: int = Field(default=2, ge=1, description="coordinator actors; coordinator i drives the saga "
                              "partitions p with p % coordinators == i (more than partitions is the same as partitions)")
    topic_suffix: str = Field(default=".sagas", description="saga topic = <event topic><suffix>")
    poll_ms: int = Field(default=10, ge=0, description="longest wait for log events when nothing else is queued")
    idle_poll_ms: int = Field(default=200, ge=0, description="the wait grows, doubling per empty turn, up to this "
                              "while nothing happens (an idle coordinator stays quiet); any work resets it to poll_ms")
    offsets_every_s: float = Field(default=1.0, gt=0, description="commit idle offsets at least this often")
    max_batch: int = Field(default=5_000, ge=1, description="most signals per transaction")
