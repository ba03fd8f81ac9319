"""The dev stack's run-time choices reach every Settings consumer through effective_settings."""

from __future__ import annotations

from pathlib import Path

from eventray.platform.devstack import effective_settings
from eventray.platform.devstack.kafka import new_cluster_id
from eventray.platform.devstack.state import StackState
from eventray.platform.settings import Settings


def test_moved_postgres_port_reaches_the_dsn(tmp_path: Path) -> None:
    StackState(postgres_port=60123).save(tmp_path)
    eff = effective_settings(Settings(home=tmp_path, database_url=None, kafka_bootstrap=None,
                                      ray_address=None, tls=False))
    assert eff.postgres_port == 60123
    assert eff.database_url is not None and ":60123/" in eff.database_url
    assert eff.dsn == eff.database_url
    assert eff.kafka_bootstrap == f"127.0.0.1:{eff.kafka_port}"
    assert eff.ray_address == f"127.0.0.1:{eff.ray_port}"


def test_configured_addresses_win(tmp_path: Path) -> None:
    StackState(postgres_port=60123).save(tmp_path)
    configured = Settings(home=tmp_path, database_url="postgresql://x@db/y",
                          kafka_bootstrap="k:9092", ray_address="ray://r:10001")
    eff = effective_settings(configured)
    assert (eff.database_url, eff.kafka_bootstrap, eff.ray_address) == (
        "postgresql://x@db/y", "k:9092", "ray://r:10001")


def test_no_state_file_means_configured_ports(tmp_path: Path) -> None:
    eff = effective_settings(Settings(home=tmp_path, database_url=None))
    assert f":{eff.postgres_port}/" in (eff.database_url or "")


def test_cluster_id_is_kafka_shaped() -> None:
    cid = new_cluster_id()
    assert len(cid) == 22 and not cid.startswith("-")


def test_pieces_recording_their_choices_at_once_lose_nothing(tmp_path) -> None:
    """dev up starts PostgreSQL and Ray on threads; each records its own fields in the state file."""
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def record(i: int) -> None:
        try:
            start.wait()
            for n in range(50):
                if i % 2:
                    StackState.update(tmp_path, ray_address=f"127.0.0.1:{n}")
                else:
                    StackState.update(tmp_path, postgres_port=60000 + n, postgres_dir=f"/d{n}")
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = StackState.load(tmp_path)
    assert (final.postgres_port, final.postgres_dir, final.ray_address) == (60049, "/d49", "127.0.0.1:49")
    assert [p.name for p in tmp_path.iterdir()] == ["devstack.json"]  # no temporary file left behind
