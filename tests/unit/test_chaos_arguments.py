"""Chaos faults refuse out-of-range arguments with a typed error before they touch any stack."""

from __future__ import annotations

import pytest

from eventray.platform.chaos import faults
from eventray.platform.errors import ConfigurationError
from eventray.platform.settings import Settings


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_loss_kafka_needs_a_share_of_connections_in_0_1(tmp_path, share: float) -> None:
    with pytest.raises(ConfigurationError, match=r"share of the connections in \(0, 1\]"):
        faults.loss_kafka(Settings(home=tmp_path), 1.0, share)


@pytest.mark.parametrize("share", [0.0, 1.0, 2.0])
def test_starve_shard_needs_a_running_share_in_0_1(tmp_path, share: float) -> None:
    with pytest.raises(ConfigurationError, match=r"share of the time in \(0, 1\)"):
        faults.starve_shard(Settings(home=tmp_path), 1.0, topic="t", share=share)


def test_the_postgres_faults_refuse_a_stack_without_its_own_server(tmp_path) -> None:
    from eventray.platform.errors import StackError

    with pytest.raises(StackError, match="external"):
        faults.outage_postgres(Settings(home=tmp_path, database_url="postgresql://x@db.example/x"), 1.0)
    with pytest.raises(StackError, match="no PostgreSQL started by this stack"):
        faults.outage_postgres(Settings(home=tmp_path, database_url=None), 1.0)
