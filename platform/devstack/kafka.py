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
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from cryptography import x509

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings
from eventray.platform.tls import TLSFiles, kafka_options

from . import _proc, certs
from .state import PieceStatus

log = logging.getLogger("eventray.devstack.kafka")

#: JVM heap of the dev broker; the compose file uses the same (KAFKA_HEAP_OPTS)
HEAP_OPTS = "-Xmx1g -Xms256m"
#: JIT of the dev broker: C1 only. Measured on 2 cores (4 transactional producers, 4,000
#: transactions of 20 records): the broker used 18-20 s of CPU with C1 against 31-37 s with the
#: default tiered C2, and finished sooner; a boot used 4-6 s of CPU against 9-11 s. C2's compiles
#: cost more than they return at a dev stack's loads, and a restart is back sooner. The compose
#: file uses the same (KAFKA_JVM_PERFORMANCE_OPTS)
JIT_OPTS = "-XX:TieredStopAtLevel=1"
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
    client = "SSL" if settings.tls else "PLAINTEXT"
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller_host}:{cport}",
        "listeners": f"{client}://{listen_host}:{listen_port},CONTROLLER://{listen_host}:{cport}",
        "advertised.listeners": f"{client}://{settings.kafka_netns_ip or '127.0.0.1'}:{port}",
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client}:{client}",
        "controller.listener.names": "CONTROLLER",
        # with TLS the broker reaches itself (transaction markers) through the SSL listener too,
        # presenting its own certificate (which carries clientAuth as well as serverAuth)
        "inter.broker.listener.name": client,
        **(tls_properties(settings) if settings.tls else {}),
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


#: the broker's network processors (num.network.threads: Kafka's default, which the dev broker keeps)
_NETWORK_THREADS = 3
#: the listener whose keystore ``reload_certificates`` updates (``listener.name.<l>.`` prefix)
_SSL_PREFIX = "listener.name.ssl."


def tls_properties(settings: Settings) -> dict[str, str]:
    """The SSL listener's settings: PEM key and trust stores from ``<home>/tls``, client auth required.

    They are listener-prefixed so that :func:`reload_certificates` can update the keystore as a
    dynamic per-broker config (KIP-226) without a restart.
    """
    tls = settings.tls_dir
    return {
        f"{_SSL_PREFIX}ssl.keystore.type": "PEM",
        f"{_SSL_PREFIX}ssl.keystore.location": str(tls / "kafka-keystore.pem"),
        f"{_SSL_PREFIX}ssl.truststore.type": "PEM",
        f"{_SSL_PREFIX}ssl.truststore.location": str(tls / "ca.crt"),
        f"{_SSL_PREFIX}ssl.client.auth": "required",
        f"{_SSL_PREFIX}ssl.endpoint.identification.algorithm": "https",
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
    }


def reload_certificates(settings: Settings, *, timeout_s: float = 30.0) -> None:
    """Make the running broker re-read its keystore (after ``eventray dev certs rotate``).

    Sets ``listener.name.ssl.ssl.keystore.location`` as a dynamic per-broker config; Kafka
    reloads a keystore whose file changed even when the path is the same. The new certificate
    must keep the old subject and SANs (Kafka checks), which :func:`.certs.rotate` does.

    Raises:
        StackError: the broker refused the update.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    location = str(settings.tls_dir / "kafka-keystore.pem")
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_address, client_id="eventray-devstack",
                                 request_timeout_ms=int(timeout_s * 1000),
                                 **kafka_options(certs.admin_tls(settings), "kafka-python"))
        try:
            answer = admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "1", configs={
                f"{_SSL_PREFIX}ssl.keystore.location": location})], raise_on_unknown=False)
        finally:
            admin.close()
    except KafkaError as e:
        raise StackError(f"Kafka at {settings.kafka_address} did not reload its keystore: {e!r}; restart it "
                         "with `eventray dev down` and `eventray dev up`") from e
    result = answer.get("broker", {}).get("1")  # {'broker': {'1': 'OK' or the error's text}}
    if result != "OK":
        raise StackError(f"Kafka refused to reload its keystore {location}: {result}; restart it with "
                         "`eventray dev down` and `eventray dev up`")
    # The controller accepted the change; the broker applies it when the metadata reaches it, to
    # one network processor after the other (connections go round-robin over them): done when
    # more consecutive new connections than there are processors all see the new certificate.
    wanted = x509.load_pem_x509_certificate((settings.tls_dir / "kafka.crt").read_bytes()).serial_number
    tls = certs.admin_tls(settings)
    assert tls is not None
    _proc.wait_until(lambda: all(served_serial(settings.kafka_address, tls) == wanted
                                 for _ in range(2 * _NETWORK_THREADS)),
                     timeout=timeout_s, interval=0.25,
                     what=f"Kafka at {settings.kafka_address} serving its new certificate")
    log.info("Kafka reloaded its keystore %s", location)


def served_serial(bootstrap: str, tls: TLSFiles) -> int | None:
    """The serial number of the certificate the broker at ``bootstrap`` presents; None when unreachable."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=host or "127.0.0.1") as conn:
            der = conn.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as e:
        log.debug("no TLS session with Kafka at %s: %r", bootstrap, e)
        return None
    return x509.load_der_x509_certificate(der).serial_number if der else None


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
        if settings.data_fs_mb:  # the log directory on a small filesystem of the stack's own (disk-full-kafka)
            from . import smallfs

            smallfs.ensure(settings, _data_dir(settings), settings.data_fs_mb)
        _format(settings, java, config)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        args = [
            *prefix, java, *HEAP_OPTS.split(), *JIT_OPTS.split(), "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
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
    tls = certs.admin_tls(settings)
    _proc.wait_until(
        lambda: ready(settings.kafka_address, tls, probe_port=listen_port(settings)),
        interval=0.2, timeout=START_TIMEOUT_S, what=f"Kafka at {settings.kafka_address}",
        alive=lambda: _proc.pid_alive(pid), log_file=settings.logs_dir / "kafka.out"
        if not log_file.exists() else log_file,
    )
    return PieceStatus("kafka", "running", settings.kafka_address, pid, started, str(log_file))


def stop(settings: Settings) -> bool:
    """SIGTERM the broker and wait for a clean shutdown; True when one was running."""
    if settings.kafka_delay_proxy:
        from . import toxiproxy

        toxiproxy.remove_proxy(settings, toxiproxy.PROXY)  # the server goes on (``dev down`` stops it)
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


def listen_port(settings: Settings) -> int:
    """The port the dev broker itself listens on: ``kafka_port``, or the one behind its delay proxy."""
    if settings.kafka_delay_proxy:
        from . import toxiproxy

        return toxiproxy.broker_port(settings)
    return settings.kafka_port


def ready(bootstrap: str, tls: TLSFiles | None = None, *, probe_port: int | None = None) -> bool:
    """True when the broker answers metadata and can initialise a transactional producer.

    Args:
        bootstrap: the broker's address.
        tls: the client identity to present when its listener is SSL.
        probe_port: the port the broker itself listens on, when ``bootstrap`` is a proxy in front
            of it (which accepts connections while the broker is down): checked first, so that a
            booting broker costs a refused connect rather than a Kafka client's timeouts.
    """
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not _proc.port_accepts(int(port), host or "127.0.0.1"):
        return False
    if probe_port is not None and not _proc.port_accepts(probe_port, host or "127.0.0.1"):
        return False
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import KafkaError

    with _quiet_kafka_logs():
        try:
            security = kafka_options(tls, "kafka-python")
            # a bounded bootstrap: a client that cannot speak the listener's protocol (plaintext
            # to an SSL port) otherwise waits out the 30 s default on every probe
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                     bootstrap_timeout_ms=5000, client_id="eventray-devstack", **security)
            try:
                admin.describe_cluster()
            finally:
                admin.close()
            producer = KafkaProducer(
                bootstrap_servers=bootstrap, transactional_id=_READY_TXN_ID,
                client_id="eventray-devstack", max_block_ms=10_000, **security,
            )
            try:
                producer.init_transactions()
            finally:
                producer.close(timeout=5)
        except (KafkaError, OSError) as e:
            log.debug("Kafka at %s not ready yet: %r", bootstrap, e)
            return False
    return True
