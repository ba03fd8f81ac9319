"""The dev broker: single-node KRaft Kafka from Maven Central jars.

The jars are resolved by Maven (``pom.xml`` beside this module) into
``<home>/kafka-<version>/libs``; the storage is formatted once with a static controller quorum
(``controller.quorum.voters``, the same as the docker-compose service); the broker runs
detached as ``java ... kafka.Kafka <home>/run/kafka.properties`` with a pid file.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings

from . import _proc
from .state import PieceStatus

log = logging.getLogger("eventray.devstack.kafka")

#: JVM heap of the dev broker; the compose file uses the same (KAFKA_HEAP_OPTS)
HEAP_OPTS = "-Xmx1g -Xms256m"
#: room for the jars (~60 MB) and a first data set
_DISK_FOR_JARS = 512 * 1024**2
_DISK_FOR_DATA = 512 * 1024**2
_READY_TXN_ID = "eventray-devstack-readiness"
#: seconds a started broker may take to run a transaction. A restart recovers its logs and
#: transaction state first; on a busy 2-core machine (the 10-minute chaos monkey) that was seen
#: to take 90 s and more, so this waits longer while the process lives (a dead one fails at once).
START_TIMEOUT_S = 240


def broker_properties(
    settings: Settings, *, log_dir: str | Path, listen_host: str = "127.0.0.1"
) -> dict[str, str]:
    """The broker configuration of the dev stack, shared with ``docker-compose.yml``.

    Args:
        settings: ports and partition count come from here.
        log_dir: the broker's data directory (``log.dirs``).
        listen_host: the interface to bind; the compose service binds ``0.0.0.0`` and reaches
            its controller through ``localhost``. Clients are always told ``127.0.0.1``.
    """
    controller_host = "localhost" if listen_host == "0.0.0.0" else listen_host
    port, cport = settings.kafka_port, settings.kafka_controller_port
    if settings.kafka_delay_proxy:  # clients reach it through the proxy on kafka_port
        from . import toxiproxy

        listen_port = toxiproxy.broker_port(settings)
    else:
        listen_port = port
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller_host}:{cport}",
        "listeners": f"PLAINTEXT://{listen_host}:{listen_port},CONTROLLER://{listen_host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{settings.kafka_netns_ip or '127.0.0.1'}:{port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(settings.partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }


def kafka_home(settings: Settings) -> Path:
    return settings.home / f"kafka-{settings.kafka_version}"


def libs_dir(settings: Settings) -> Path:
    return kafka_home(settings) / "libs"


def _run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def _pid_file(settings: Settings) -> Path:
    return _run_dir(settings) / "kafka.pid"


def _data_dir(settings: Settings) -> Path:
    return settings.data_dir / "kafka"


def _classpath(settings: Settings) -> str:
    return f"{libs_dir(settings)}/*"


# --- status ------------------------------------------------------------------------------


def _running_pid(settings: Settings) -> int | None:
    pid = _proc.read_pid(_pid_file(settings))
    if _proc.pid_alive(pid) and "kafka.Kafka" in _proc.cmdline(pid or 0):
        return pid
    return None


def status(settings: Settings) -> PieceStatus:
    if settings.kafka_bootstrap:
        return PieceStatus("kafka", "external", settings.kafka_bootstrap)
    pid = _running_pid(settings)
    detail = str(settings.logs_dir / "kafka.log")
    if pid is None:
        return PieceStatus("kafka", "stopped", settings.kafka_address, detail=detail)
    return PieceStatus("kafka", "running", settings.kafka_address, pid, detail=detail)


# --- install, format, start, stop ---------------------------------------------------------


def prepare(settings: Settings) -> str:
    """Make sure Java and the jars are here; return the java executable."""
    java = _proc.ensure_command(
        "java", "openjdk-17-jre-headless", why="to run the dev Kafka broker (Java 17+)"
    )
    libs = libs_dir(settings)
    if not (libs / ".complete").exists():
        _download_jars(settings)
    return java


def _download_jars(settings: Settings) -> None:
    mvn = _proc.ensure_command("mvn", "maven", why="to fetch the Kafka jars from Maven Central")
    home = kafka_home(settings)
    _proc.require_disk(settings.home, _DISK_FOR_JARS, "the Kafka jars")
    home.mkdir(parents=True, exist_ok=True)
    # work on a copy of the pom so that Maven writes nothing into the source tree
    pom = home / "pom.xml"
    pom.write_bytes(resources.files("eventray.platform.devstack").joinpath("pom.xml").read_bytes())
    libs = libs_dir(settings)
    shutil.rmtree(libs, ignore_errors=True)
    try:
        _proc.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}", f"-Dkafka.version={settings.kafka_version}"],
            what=f"downloading Kafka {settings.kafka_version} jars from Maven Central with Maven",
            cwd=home, timeout=900,
        )
    except StackError as e:
        raise StackError(
            f"{e.message}\nIs Maven Central (https://repo.maven.apache.org) reachable? "
            "Behind a proxy, configure it in ~/.m2/settings.xml."
        ) from e
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"Maven finished but no kafka_2.13 jar is in {libs}")
    (libs / ".complete").write_text(settings.kafka_version + "\n")


def _write_config(settings: Settings) -> Path:
    run = _run_dir(settings)
    run.mkdir(parents=True, exist_ok=True)
    props = broker_properties(settings, log_dir=_data_dir(settings),
                              listen_host=settings.kafka_netns_ip or "127.0.0.1")
    path = run / "kafka.properties"
    path.write_text(
        "# generated by `eventray dev up` from eventray.platform.devstack.kafka.broker_properties\n"
        + "".join(f"{k}={v}\n" for k, v in props.items())
    )
    log4j = run / "log4j2.properties"
    log4j.write_bytes(
        resources.files("eventray.platform.devstack").joinpath("log4j2.properties").read_bytes()
    )
    return path


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as Uuid.randomUuid)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _format(settings: Settings, java: str, config: Path) -> None:
    data = _data_dir(settings)
    if (data / "meta.properties").exists():
        return
    _proc.require_disk(settings.data_dir, _DISK_FOR_DATA, "the Kafka log")
    data.mkdir(parents=True, exist_ok=True)
    _proc.run(
        [java, "-cp", _classpath(settings), f"-Dlog4j2.configurationFile={config.parent / 'log4j2.properties'}",
         f"-Dkafka.logs.dir={settings.logs_dir}",
         "kafka.tools.StorageTool", "format", "--config", str(config),
         "--cluster-id", new_cluster_id(), "--ignore-formatted"],
        what="formatting the Kafka storage", timeout=120,
    )


def start(settings: Settings) -> PieceStatus:
    """Start the broker unless it runs; wait until it can run a transaction.

    Raises:
        StackError: Java or Maven missing, port taken, download failed, broker not ready.
    """
    pid = _running_pid(settings)
    started = False
    log_file = settings.logs_dir / "kafka.log"
    if pid is None:
        java = prepare(settings)
        prefix: list[str] = []
        if settings.kafka_netns_ip and settings.kafka_delay_proxy:
            raise StackError("EVENTRAY_KAFKA_NETNS_IP and EVENTRAY_KAFKA_DELAY_PROXY are two ways to delay the "
                             "broker; set one of them")
        if settings.kafka_netns_ip:
            from . import netns

            prefix = netns.ensure(settings)
        elif settings.kafka_delay_proxy:
            from . import toxiproxy

            _proc.require_port(toxiproxy.broker_port(settings), "Kafka behind its delay proxy (kafka_port + 2)",
                               "kafka_port")
            _proc.require_port(settings.kafka_controller_port, "Kafka's controller", "kafka_controller_port")
        else:
            _proc.require_port(settings.kafka_port, "Kafka", "kafka_port")
            _proc.require_port(settings.kafka_controller_port, "Kafka's controller", "kafka_controller_port")
        config = _write_config(settings)
        _format(settings, java, config)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        args = [
            *prefix, java, *HEAP_OPTS.split(), "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={config.parent / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={settings.logs_dir}",
            "-cp", _classpath(settings), "kafka.Kafka", str(config),
        ]
        out = open(settings.logs_dir / "kafka.out", "ab")
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=kafka_home(settings), close_fds=True,
        )
        out.close()
        pid = proc.pid
        _pid_file(settings).write_text(f"{pid}\n")
        started = True
        log.info("started Kafka (pid %s), log %s", pid, log_file)
    if settings.kafka_delay_proxy:
        from . import toxiproxy

        toxiproxy.start(settings)
    _proc.wait_until(
        lambda: ready(settings.kafka_address),
        timeout=START_TIMEOUT_S, what=f"Kafka at {settings.kafka_address}",
        alive=lambda: _proc.pid_alive(pid), log_file=settings.logs_dir / "kafka.out"
        if not log_file.exists() else log_file,
    )
    return PieceStatus("kafka", "running", settings.kafka_address, pid, started, str(log_file))


def stop(settings: Settings) -> bool:
    """SIGTERM the broker and wait for a clean shutdown; True when one was running."""
    if settings.kafka_delay_proxy:
        from . import toxiproxy

        toxiproxy.stop(settings)
    pid = _running_pid(settings)
    if pid is None:
        _pid_file(settings).unlink(missing_ok=True)
        return False
    _proc.terminate([pid], timeout=60)
    _pid_file(settings).unlink(missing_ok=True)
    return True


# --- readiness ----------------------------------------------------------------------------


@contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    # kafka-python logs every refused connection at ERROR while the broker boots
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def ready(bootstrap: str) -> bool:
    """True when the broker answers metadata and can initialise a transactional producer."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not _proc.port_accepts(int(port), host or "127.0.0.1"):
        return False
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import KafkaError

    with _quiet_kafka_logs():
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                     client_id="eventray-devstack")
            try:
                admin.describe_cluster()
            finally:
                admin.close()
            producer = KafkaProducer(
                bootstrap_servers=bootstrap, transactional_id=_READY_TXN_ID,
                client_id="eventray-devstack", max_block_ms=10_000,
            )
            try:
                producer.init_transactions()
            finally:
                producer.close(timeout=5)
        except (KafkaError, OSError) as e:
            log.debug("Kafka at %s not ready yet: %r", bootstrap, e)
            return False
    return True
