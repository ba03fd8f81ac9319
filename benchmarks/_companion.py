"""A second Kafka and PostgreSQL, with TLS the other way round, for the benchmarks' TLS-cost rows.

What TLS costs is the same load against two stacks that differ only in ``EVENTRAY_TLS``: the one
the benchmark runs on (the dev stack, mutual TLS on by default) and this companion, started by
the dev stack's own code in a home of its own (``EVENTRAY_BENCH_COMPANION_HOME``, default
/tmp/eventray-bench-companion) on ports from ``EVENTRAY_BENCH_COMPANION_PORT_BASE`` (default
32000: Kafka 32092, its controller 32093, PostgreSQL 32432), clear of the dev (19092, 55432),
chaos (29000 on) and TLS-test (31000 on) stacks. Its shards and servers run on the benchmark's
Ray, so the two differ in the wire to Kafka and PostgreSQL (and, for HTTP, the ingress scheme)
and nothing else. It is taken down, data purged, when the benchmark ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from eventray.platform.settings import Settings

HOME = Path(os.environ.get("EVENTRAY_BENCH_COMPANION_HOME", "/tmp/eventray-bench-companion"))
BASE = int(os.environ.get("EVENTRAY_BENCH_COMPANION_PORT_BASE", "32000"))


def configured(base: Settings) -> Settings:
    """The companion's configured settings: ``base`` with TLS flipped, its own home and ports,
    the same Ray (so the dev stack leaves Ray alone)."""
    return base.model_copy(update={
        "home": HOME, "tls": not base.tls, "tls_ca_file": None, "tls_cert_file": None, "tls_key_file": None,
        "kafka_port": BASE + 92, "kafka_controller_port": BASE + 93, "postgres_port": BASE + 432,
        "kafka_bootstrap": None, "database_url": None, "ray_address": base.ray_address,
        "kafka_delay_proxy": False, "kafka_netns_ip": None})


@contextmanager
def companion(base: Settings) -> Iterator[Settings]:
    """The companion stack up for the block; yields its effective settings (addresses filled in)."""
    from eventray.platform import devstack

    if base.ray_address is None:
        raise ValueError("the companion shares the benchmark's Ray: pass effective settings (ray_address set)")
    settings = configured(base)
    devstack.down(settings, purge=True)  # a run that died left its stack: start clean
    try:
        report = devstack.up(settings, console=Console(stderr=True, quiet=True))
        if report["postgres"].state != "running" or report["kafka"].state != "running":
            raise SystemExit(f"the TLS-cost companion stack did not start: {report}")
        yield report.settings
    finally:
        devstack.down(settings, purge=True)


def env_for(settings: Settings, *, https: bool) -> dict[str, str]:
    """``EVENTRAY_*`` variables that make a child process connect to the stack of ``settings``."""
    assert settings.kafka_bootstrap is not None and settings.database_url is not None
    assert settings.ray_address is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTRAY_TLS_")}
    env.update({
        "EVENTRAY_HOME": str(settings.home), "EVENTRAY_TLS": "true" if settings.tls else "false",
        "EVENTRAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "EVENTRAY_DATABASE_URL": settings.database_url,
        "EVENTRAY_KAFKA_PORT": str(settings.kafka_port), "EVENTRAY_POSTGRES_PORT": str(settings.postgres_port),
        "EVENTRAY_RAY_ADDRESS": settings.ray_address, "EVENTRAY_HTTPS": "true" if https else "false",
    })
    if settings.topic is not None:
        env["EVENTRAY_TOPIC"] = settings.topic
    return env
