"""Saga settings, read from ``EVENTRAY_SAGA_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SagaSettings(BaseSettings):
    """How sagas run. Every field can be set with ``EVENTRAY_SAGA_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="EVENTRAY_SAGA_", extra="ignore", frozen=True)

    partitions: int = Field(default=2, ge=1, description="the saga topic's partitions, fixed when it is created "
                            "(a saga id's partition must never change); the most coordinators that can share work")
    coordinators: int = Field(default=2, ge=1, description="coordinator actors; coordinator i drives the saga "
                              "partitions p with p % coordinators == i (more than partitions is the same as partitions)")
    topic_suffix: str = Field(default=".sagas", description="saga topic = <event topic><suffix>")
    fraud_threshold: float = Field(default=0.15, description="anomaly score above which a transfer is refused")
    scorer: str = Field(default="anomaly", description="'anomaly' (the ML deployment) or 'rule' (amount limit)")
    rule_limit: int = Field(default=10**9, ge=1, description="the rule scorer's amount (minor units) scoring 1.0")
    step_timeout_ms: int = Field(default=5_000, ge=1)
    overall_timeout_ms: int = Field(default=60_000, ge=1)
    max_attempts: int = Field(default=8, ge=1)
    compensation_max_attempts: int = Field(default=40, ge=1)
    backoff_base_ms: int = Field(default=50, ge=0)
    backoff_max_ms: int = Field(default=2_000, ge=0)
    poll_ms: int = Field(default=10, ge=0, description="longest wait for log events when nothing else is queued")
    offsets_every_s: float = Field(default=1.0, gt=0, description="commit idle offsets at least this often")
    max_batch: int = Field(default=5_000, ge=1, description="most signals per transaction")
