"""One settings object for the whole platform, read from ``EVENTRAY_*`` environment variables.

Defaults point at the local dev stack that ``eventray dev up`` starts, so a laptop needs no
configuration. A real deployment sets the addresses (``EVENTRAY_KAFKA_BOOTSTRAP``,
``EVENTRAY_DATABASE_URL``, ``EVENTRAY_RAY_ADDRESS``) and the dev stack then skips that piece.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventray.platform.errors import ConfigurationError
from eventray.platform.tls import TLSFiles, postgres_params


#: the bundled example app
DEFAULT_APP = "eventray.serving.bank.app:app"


def _default_home() -> Path:
    return Path.home() / ".cache" / "eventray"


class Settings(BaseSettings):
    """Platform configuration.

    Every field can be set with an environment variable named ``EVENTRAY_<FIELD>``.
    """

    model_config = SettingsConfigDict(env_prefix="EVENTRAY_", extra="ignore", frozen=True)

    # --- addresses of external services; when unset, the dev stack provides them ---
    kafka_bootstrap: str | None = Field(
        default=None, description="host:port list of a Kafka cluster; unset means the local dev broker"
    )
    database_url: str | None = Field(
        default=None, description="PostgreSQL conninfo URL; unset means the local dev server"
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster address; unset means a local head started by dev up"
    )

    # --- mutual TLS to Kafka and PostgreSQL (see eventray.platform.tls) ---
    tls: bool = Field(
        default=True, description="every Kafka and PostgreSQL client uses TLS with a client certificate, and "
        "the dev stack's broker (SSL listener, ssl.client.auth=required) and server (ssl=on, hostssl cert "
        "auth only) require it. false: plaintext everywhere (EVENTRAY_TLS=false, then restart the dev stack)"
    )
    tls_ca_file: Path | None = Field(
        default=None, description="PEM CA that signed the servers' certificates; unset means the dev CA, "
        "<home>/tls/ca.crt"
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM client certificate (its CN is the PostgreSQL user); unset means "
        "<home>/tls/eventray.crt"
    )
    tls_key_file: Path | None = Field(
        default=None, description="PEM private key of tls_cert_file; unset means <home>/tls/eventray.key"
    )

    # --- the local dev stack ---
    home: Path = Field(default_factory=_default_home, description="cache for jars, data and logs")
    kafka_version: str = "4.1.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    postgres_port: int = 55432
    postgres_user: str = "eventray"
    postgres_db: str = "eventray"
    ray_port: int = 26379
    ray_num_cpus: int | None = None
    # a second stack on one machine (the chaos tests) needs every Ray head port of its own
    ray_client_server_port: int = 10001
    ray_dashboard_agent_port: int = 52365
    ray_metrics_export_port: int = Field(
        default=26380, description="the ONE place to scrape: the head's Prometheus endpoint, which "
        "carries the metrics of every actor and replica on that node (see docs/operations.md); "
        "outside Ray's default worker port range (10002-19999)"
    )
    kafka_netns_ip: str | None = Field(
        default=None, description="opt-in (root): run the dev broker in a network namespace reached "
        "through a veth pair at this address (x.y.z.2 of a /30), so `eventray chaos delay-kafka` "
        "can shape its traffic with tc netem"
    )
    kafka_delay_proxy: bool = Field(
        default=False, description="opt-in: run Toxiproxy on kafka_port in front of the dev broker (which "
        "then listens on kafka_port + 2), so `eventray chaos delay-kafka` can delay its traffic on kernels "
        "without netem; needs Go to build it. Not together with kafka_netns_ip"
    )
    data_fs_mb: int | None = Field(
        default=None, ge=64, description="opt-in (root): the broker's log directory and PostgreSQL's data "
        "directory each on a tmpfs of this many MiB of the stack's own, so `eventray chaos disk-full-kafka` "
        "and `disk-full-postgres` can fill them (the data lives in memory: chaos stacks only)"
    )
    postgres_proxy: bool = Field(
        default=False, description="opt-in: clients reach the dev PostgreSQL through Toxiproxy on "
        "postgres_port + 2 (the server keeps its own port), so `eventray chaos partition-postgres` can cut "
        "their connections; needs Go to build it"
    )

    # --- operations ---
    log_json: bool = Field(default=True, description="actors and replicas log JSON lines")
    trace_commands: bool = Field(
        default=True, description="shards and runners log the correlation ids of each batch (one "
        "line per batch), which `eventray logs --correlation` follows"
    )

    # --- the app: the domain eventray hosts ---
    app: str = Field(
        default=DEFAULT_APP, description="import path of the eventray.App to host, 'package.module:attr' "
        "(the bundled bank by default); --app on the command line sets it"
    )

    # --- the event log ---
    topic: str | None = Field(
        default=None, description="the event topic; unset means the app's own (App(topic=...), else "
        "'<app name>.events')"
    )
    partitions: int = 4
    dead_letter_topic: str = "eventray.dead-letters"
    transaction_timeout_ms: int = 60_000
    commit_timeout_s: float = Field(
        default=10.0, gt=0, description="how long a shard waits for its transaction's commit before it treats "
        "the outcome as unknown: it re-creates its producer and re-reads the partition's tail, so nothing "
        "acknowledged is lost or doubled either way. A commit the broker left unanswered across its restart "
        "costs this long, so it bounds how soon commands flow again (a commit takes milliseconds otherwise)"
    )
    kafka_client: Literal["kafka-python", "confluent-kafka"] = Field(
        default="kafka-python", description="Kafka client of the shards' transactional writers and of the "
        "event-log readers (shard recovery, projection hosts and runners, live subscriptions): 'kafka-python' "
        "(pure Python) or 'confluent-kafka' (librdkafka, which fetches, parses, sends and commits in C threads "
        "outside the GIL). Both pass the same event-log contract tests; saga coordinators, which commit "
        "consumer offsets in their transactions, always use kafka-python"
    )

    # --- the write path ---
    shards: int = 2
    dedupe_window: int = 100_000
    shard_batch_max: int = 2048
    shard_queue_max: int = 20_000
    bus_waiting_max: int = 50_000
    bus_max_in_flight: int = 1
    bus_call_timeout_s: float = 30.0
    snapshot_every_events: int = 5_000
    snapshot_interval_s: float = 2.0

    # --- the read path ---
    projection_hosts: int = Field(
        default=1, ge=0, description="projection hosts per host group: host i reads the partitions p with "
        "p % hosts == i once and applies every current projection of its group to them (the plain "
        "projections share the group 'main'; one with an enrich step has its own). 0 means one per partition"
    )
    projection_runners: int = Field(
        default=0, ge=0, description="runner actors per projection version while a replay builds it (and after, on a stack with "
        "no projection hosts); runner i applies the partitions "
        "p with p % runners == i, each on a thread of its own. 0 means one per partition (the most "
        "parallel; more than the partition count is the same as 0)"
    )

    # --- placement on a cluster ---
    placement: Literal["spread", "pack"] = Field(
        default="spread", description="'spread': Ray's SPREAD scheduling over the nodes; 'pack': Ray's default"
    )
    actor_resource: str | None = Field(
        default=None, description="custom Ray resource eventray's actors require (declared by the nodes "
        "meant for them, e.g. the workers); unset means any node"
    )

    # --- ML models (training artifacts and Serve deployments) ---
    model_dir: Path | None = Field(
        default=None, description="where `eventray models train` writes ONNX files and the registry; "
        "unset means <home>/models"
    )
    ml_app_name: str = Field(default="eventray-ml", description="Serve application of the model deployments")
    ml_replica_num_cpus: float = Field(
        default=0.1, gt=0, description="CPUs reserved per model replica: a laptop's 2 cores hold the demo's "
        "models, the tests' and room to scale; a cluster sizes it to the model (EVENTRAY_ML_REPLICA_NUM_CPUS)"
    )
    ml_max_batch_size: int = Field(default=32, ge=1, description="requests per @serve.batch call")
    ml_batch_wait_timeout_s: float = Field(default=0.003, ge=0)
    ml_max_ongoing_requests: int = Field(
        default=128, ge=1, description="per replica; must be at least ml_max_batch_size"
    )
    ml_max_rows_per_request: int = Field(default=4096, ge=1)
    ml_max_text_chars: int = Field(default=2000, ge=1)
    # autoscaling: production defaults, CI overrides them through EVENTRAY_ML_* variables
    ml_min_replicas: int = Field(default=1, ge=0)
    ml_max_replicas: int = Field(default=4, ge=1)
    ml_target_ongoing_requests: float = Field(default=32.0, gt=0)
    ml_upscale_delay_s: float = Field(default=30.0, ge=0)
    ml_downscale_delay_s: float = Field(default=600.0, ge=0)
    ml_metrics_interval_s: float = Field(default=10.0, gt=0)
    ml_look_back_period_s: float = Field(default=30.0, gt=0)

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def models_dir(self) -> Path:
        """Where trained ONNX models and their registry live."""
        return self.model_dir or self.home / "models"

    @property
    def tls_dir(self) -> Path:
        """Where the dev stack keeps its CA and certificates (``eventray dev certs``)."""
        return self.home / "tls"

    def tls_files(self) -> TLSFiles | None:
        """The client identity every Kafka and PostgreSQL client presents; None when TLS is off.

        Raises:
            ConfigurationError: a file is missing or unreadable; the message names the setting.
        """
        if not self.tls:
            return None
        return TLSFiles(
            ca=self.tls_ca_file or self.tls_dir / "ca.crt",
            cert=self.tls_cert_file or self.tls_dir / f"{self.postgres_user}.crt",
            key=self.tls_key_file or self.tls_dir / f"{self.postgres_user}.key",
        ).check()

    @property
    def kafka_address(self) -> str:
        """The bootstrap address clients use: the configured one, else the dev broker."""
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return f"{self.kafka_netns_ip or '127.0.0.1'}:{self.kafka_port}"

    @property
    def dsn(self) -> str:
        """The PostgreSQL conninfo URL clients use: the configured one, else the dev server.

        With TLS on, the URL carries ``sslmode=verify-full`` and the client's files (parameters
        the configured URL already sets are kept).
        """
        url = self.database_url or (
            f"postgresql://{self.postgres_user}@127.0.0.1:{self.postgres_port}/{self.postgres_db}"
        )
        return with_postgres_tls(url, self.tls_files())


def with_database(url: str, db: str) -> str:
    """The ``postgresql://`` URL ``url`` naming database ``db`` instead, its parameters (TLS) kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"{url!r} is not a postgresql:// URL: give EVENTRAY_DATABASE_URL as a URL")
    return urlunsplit(parts._replace(path="/" + db))


def with_postgres_tls(url: str, tls: TLSFiles | None) -> str:
    """``url`` (a ``postgresql://`` URL or a keyword conninfo) with the TLS parameters of ``tls`` added."""
    params = postgres_params(tls)
    if not params:
        return url
    if not url.startswith(("postgresql://", "postgres://")):  # keyword/value conninfo
        present = {item.split("=", 1)[0].strip() for item in url.split() if "=" in item}
        return " ".join([url, *(f"{k}='{v}'" for k, v in params.items() if k not in present)])
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in params.items():
        query.setdefault(name, value)
    return urlunsplit(parts._replace(query=urlencode(query)))
