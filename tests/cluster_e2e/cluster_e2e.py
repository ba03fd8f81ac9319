"""``make cluster-e2e``: a real ``ray up`` of the ``local`` provider config on this machine.

Steps: openssh-server and rsync (apt-get, root); root key SSH to 127.0.0.1; a database and a
topic of the run's own; ``ray up -y`` of an e2e copy of platform/deploy/cluster/local.yaml with
head_ip 127.0.0.1; ``eventray deploy`` onto it (twice: the second must change nothing);
``eventray status``; a registerUser mutation and a user(id) query over HTTP with a dev token;
``ray down -y``. Everything it made is removed at the end, failed or not.

The machine may run other Ray clusters (the shared dev head, chaos stacks), so:

* the e2e head gets ports, a ``--temp-dir`` and a Serve HTTP port of its own, and its start
  commands stop only the processes under that temp dir (``rayhead.stop``), never ``ray stop``;
* ``ray down`` runs a plain ``ray stop`` over SSH on the head (``teardown_cluster`` in
  ray/autoscaler/_private/commands.py), which would stop EVERY Ray process here. The e2e key
  is authorized with a forced command (``guard.sh``) that runs any command containing
  ``ray stop`` as the scoped stop instead; root's login PATH has no ``ray`` either, but that is
  luck, not a guarantee;
* sshd: when none listens on 127.0.0.1:22, one of our own runs with its own config, host key
  and authorized_keys file under build/cluster-e2e (the system's sshd_config is not touched),
  and is stopped at the end; when one already listens, the e2e key is appended to
  /root/.ssh/authorized_keys with a marker and removed at the end.

Run as root from the checkout: ``make cluster-e2e`` (not part of ``make test``).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import yaml

from eventray.platform.deploy.package import build_wheel
from eventray.platform.devstack import _proc, rayhead
from eventray.platform.devstack.state import effective_settings
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import Settings, with_database

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "cluster-e2e"
SSH = WORK / "ssh"
NODE = WORK / "node"           # what `ray up` puts on the "remote" head (same machine)
NODE_HOME = NODE / "home"      # EVENTRAY_HOME of the head: its Ray temp dir derives from it
CLUSTER_NAME = "eventray-e2e"
MARKER = "eventray-cluster-e2e"
VENV_BIN = Path(sys.executable).parent

# A Ray head of its own: none of these may be the shared dev head's (26379, 10001, 52365,
# 26380, workers 10002-19999), the chaos stacks' (29xxx) or Serve direct ingress (30000-31000);
# all below the kernel's ephemeral range (32768+).
GCS_PORT = 23479  # outside the worker port range below
PORTS = {
    "--ray-client-server-port": 23001,
    "--node-manager-port": 23002,
    "--object-manager-port": 23003,
    "--runtime-env-agent-port": 23004,
    "--dashboard-agent-grpc-port": 23005,
    "--dashboard-agent-listen-port": 23006,
    "--metrics-export-port": 23080,
    "--min-worker-port": 23100,
    "--max-worker-port": 23399,
}
SERVE_HTTP_PORT = 23800
DEV_HEAD_PORT = Settings().ray_port


def say(msg: str) -> None:
    print(f"[cluster-e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(args: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600,
       capture: bool = False) -> subprocess.CompletedProcess[str]:
    say("$ " + shlex.join(args))
    proc = subprocess.run(args, env=env, text=True, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    if capture and proc.stdout:
        print(proc.stdout, end="", flush=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"cluster-e2e: {args[0]} {args[1] if len(args) > 1 else ''} failed (exit {proc.returncode})")
    return proc


# --- SSH ---------------------------------------------------------------------------------------

def ensure_packages() -> None:
    if os.geteuid() != 0:
        raise SystemExit("cluster-e2e installs openssh-server and runs sshd: run it as root")
    missing = [p for p, path in (("openssh-server", "/usr/sbin/sshd"), ("rsync", "/usr/bin/rsync"),
                                 ("openssh-client", "/usr/bin/ssh")) if not Path(path).exists()]
    if missing:
        say(f"apt-get install {' '.join(missing)}")
        _proc.apt_install(missing)


def write_guard() -> Path:
    """The forced command of the e2e key (see the module docstring)."""
    stop = write_stop_script()
    guard = SSH / "guard.sh"
    guard.write_text(f"""#!/bin/bash
# Forced command of the cluster-e2e key. `ray down` (and `ray kill-random-node`) run a plain
# `ray stop` on the head, which stops every Ray process on this machine; run the stop of the
# e2e head's own processes instead. Everything else runs as sent.
case "$SSH_ORIGINAL_COMMAND" in
  "") echo "cluster-e2e key: no interactive shell" >&2; exit 1 ;;
  *"ray stop"*) echo "cluster-e2e guard: 'ray stop' replaced by {stop}" >&2; exec {stop} ;;
esac
exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"
""")
    guard.chmod(0o755)
    return guard


def write_stop_script() -> Path:
    """Stops the processes under the e2e head's temp dir (and its client server): never `ray stop`."""
    stop = WORK / "stop-head.sh"
    stop.write_text(f"""#!/bin/bash
exec env EVENTRAY_HOME={NODE_HOME} EVENTRAY_RAY_PORT={GCS_PORT} {sys.executable} -c \\
  'from eventray.platform.devstack import rayhead; from eventray.platform.settings import Settings; rayhead.stop(Settings())'
""")
    stop.chmod(0o755)
    return stop


def setup_ssh(cleanup: ExitStack) -> Path:
    """Root key SSH to 127.0.0.1; returns the private key."""
    SSH.mkdir(parents=True, exist_ok=True)
    SSH.chmod(0o700)
    key = SSH / "id_ed25519"
    if not key.exists():
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", MARKER, "-f", str(key)])
    guard = write_guard()
    entry = (f'command="{guard}",no-port-forwarding,no-agent-forwarding,no-X11-forwarding '
             f"{key.with_suffix('.pub').read_text().strip()}\n")
    if _proc.port_accepts(22):
        say("an sshd already listens on 127.0.0.1:22: authorizing the e2e key in /root/.ssh/authorized_keys")
        auth = Path("/root/.ssh/authorized_keys")
        auth.parent.mkdir(mode=0o700, exist_ok=True)
        existed = auth.exists()
        with auth.open("a") as f:
            f.write(entry)
        auth.chmod(0o600)

        def unauthorize() -> None:
            lines = [ln for ln in auth.read_text().splitlines(keepends=True) if MARKER not in ln]
            if lines or existed:
                auth.write_text("".join(lines))
            else:
                auth.unlink()
        cleanup.callback(unauthorize)
        return key
    host_key = SSH / "host_ed25519"
    if not host_key.exists():
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    (SSH / "authorized_keys").write_text(entry)
    (SSH / "authorized_keys").chmod(0o600)
    config = SSH / "sshd_config"
    config.write_text(f"""# sshd of make cluster-e2e only: loopback, root by key, its own files
ListenAddress 127.0.0.1
Port 22
HostKey {host_key}
PidFile {SSH / 'sshd.pid'}
AuthorizedKeysFile {SSH / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
Subsystem sftp internal-sftp
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    sh(["/usr/sbin/sshd", "-f", str(config), "-E", str(SSH / "sshd.log")])
    _proc.wait_until(lambda: _proc.port_accepts(22), timeout=10, what="our sshd on 127.0.0.1:22")

    def stop_sshd() -> None:
        pid = _proc.read_pid(SSH / "sshd.pid")
        if pid:
            os.kill(pid, signal.SIGTERM)  # the listener; sessions of this run have ended
    cleanup.callback(stop_sshd)
    return key


# --- the run's own database and topic ------------------------------------------------------------

def create_database(cleanup: ExitStack, shared: Settings, db: str) -> str:
    with psycopg.connect(shared.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')

    def drop() -> None:
        with psycopg.connect(shared.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        say(f"dropped database {db}")
    cleanup.callback(drop)
    return with_database(shared.dsn, db)


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="eventray-cluster-e2e")
    try:
        present = [t for t in topics if t in set(admin.list_topics())]
        if present:
            admin.delete_topics(present)
            say(f"deleted topics {present}")
    finally:
        admin.close()


# --- the cluster config --------------------------------------------------------------------------

def cluster_config(key: Path, wheel_dir: Path, env: dict[str, str]) -> Path:
    """platform/deploy/cluster/local.yaml, pointed at 127.0.0.1 and made safe for a shared machine."""
    config = yaml.safe_load((ROOT / "platform/deploy/cluster/local.yaml").read_text())
    node_venv = NODE / "venv"
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = next(p for p in sys.path if p.startswith(str(ROOT / ".venv")) and p.endswith("site-packages"))
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    temp = rayhead.temp_dir(Settings(home=NODE_HOME))
    start = [str(node_venv / "bin" / "python"), "-m", "ray.scripts.scripts", "start", "--head",
             f"--port={GCS_PORT}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
             "--include-dashboard=false", "--disable-usage-stats", "--autoscaling-config=~/ray_bootstrap_config.yaml",
             *(f"{flag}={port}" for flag, port in PORTS.items())]
    stop = str(WORK / "stop-head.sh")
    config.update({
        "cluster_name": CLUSTER_NAME,
        "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
        "auth": {"ssh_user": "root", "ssh_private_key": str(key)},
        "min_workers": 0,
        "max_workers": 0,
        "file_mounts": {str(NODE / "dist"): str(wheel_dir)},
        # The node venv installs eventray from the shipped wheel, as on a real cluster; its
        # third-party packages (Ray included) are the checkout venv's, through a .pth file:
        # the same machine, no network, and the driver's Ray version by construction.
        "setup_commands": [
            f"rm -rf {node_venv} && {sys.executable} -m venv --without-pip {node_venv}",
            f"{sys.executable} -m pip --python {node_venv}/bin/python install -q --no-deps "
            f"--disable-pip-version-check {NODE / 'dist'}/eventray-*.whl",
            # after the install, so that pip does not see the checkout's editable eventray
            f"echo {site} > {node_venv}/lib/{py}/site-packages/eventray_e2e_deps.pth",
            f"mkdir -p {NODE_HOME}",
        ],
        "head_start_ray_commands": [
            stop,  # this head's processes only: Ray's default `ray stop` would stop the dev head too
            f"ulimit -n 65536; env {exports} RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled "
            + shlex.join(start),
        ],
        "worker_start_ray_commands": [],
    })
    path = WORK / "cluster.yaml"
    path.write_text("# generated by tests/cluster_e2e/cluster_e2e.py from platform/deploy/cluster/local.yaml\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


# --- GraphQL ---------------------------------------------------------------------------------------

REGISTER = """mutation($i: RegisterUserInput!) {
  registerUser(input: $i) { __typename ... on CommandSuccess { aggregateId } }
}"""
USER = "query($id: ID!) { user(id: $id) { id name email version } }"


def graphql_round_trip(url: str, token: str, run_id: str) -> None:
    headers = {"authorization": f"Bearer {token}"}
    user_id = f"e2e-{run_id}"
    with httpx.Client(timeout=30, headers=headers) as http:
        r = http.post(url, json={"query": REGISTER, "variables": {
            "i": {"userId": user_id, "name": "Cluster E2E", "email": f"{user_id}@example.com"}}})
        say(f"registerUser -> {r.status_code} {r.text}")
        assert r.status_code == 200 and r.json()["data"]["registerUser"]["__typename"] == "CommandSuccess", r.text
        deadline = time.monotonic() + 60  # the read model follows the log
        while True:
            r = http.post(url, json={"query": USER, "variables": {"id": user_id}})
            body = r.json()
            if r.status_code == 200 and (body.get("data") or {}).get("user"):
                say(f"user(id) -> {r.text}")
                assert body["data"]["user"]["name"] == "Cluster E2E", r.text
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"user {user_id} never showed up in the read model: {r.text}")
            time.sleep(0.5)


# --- the run -------------------------------------------------------------------------------------

def main() -> int:
    t0 = time.monotonic()
    ensure_packages()
    WORK.mkdir(parents=True, exist_ok=True)
    lock = (WORK.parent / "cluster-e2e.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit("another `make cluster-e2e` runs on this machine") from None
    busy = [p for p in (GCS_PORT, SERVE_HTTP_PORT, *PORTS.values()) if not _proc.port_is_free(p)]
    if busy:
        raise SystemExit(f"cluster-e2e ports in use: {busy} ({_proc.who_listens(busy[0])})")
    dev_head_up = _proc.port_accepts(DEV_HEAD_PORT)
    shared = effective_settings()
    run_id = uuid.uuid4().hex[:8]
    topic = f"eventray.e2e-{run_id}"
    ok = False
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, WORK, ignore_errors=True)
        key = setup_ssh(cleanup)
        dsn = create_database(cleanup, shared, f"eventray_e2e_{run_id}")
        cleanup.callback(delete_topics, shared.kafka_address,
                         [topic, f"{topic}.dead-letters", f"{topic}{SagaSettings().topic_suffix}"])
        env = {
            "EVENTRAY_KAFKA_BOOTSTRAP": shared.kafka_address,
            "EVENTRAY_DATABASE_URL": dsn,
            "EVENTRAY_TOPIC": topic,
            "EVENTRAY_DEAD_LETTER_TOPIC": f"{topic}.dead-letters",
            "EVENTRAY_HOME": str(NODE_HOME),
            # no ML models on this cluster: transfers are scored by the amount rule. TransferMoney's
            # policy is read where its coordinators run (eventray.serving.bank.fraud.transfer_policy),
            # so this goes into the head's `ray start` environment as well as the client's
            "EVENTRAY_SAGA_SCORER": "rule",
        }
        wheel = build_wheel(ROOT, WORK / "dist")
        config = cluster_config(key, wheel.parent, env)
        say(f"cluster config: {config}")

        # files `ray up` leaves on the head (root's home) and the local provider's state
        leftovers = [Path.home() / "ray_bootstrap_config.yaml", Path.home() / "ray_bootstrap_key.pem",
                     Path(f"/tmp/ray/cluster-{CLUSTER_NAME}.state"), Path(f"/tmp/ray/cluster-{CLUSTER_NAME}.lock")]
        for p in leftovers:
            if not p.exists():
                cleanup.callback(lambda p=p: p.unlink(missing_ok=True))
        # `ray down` caches the bootstrapped config under /tmp/ray-config-<hash> (it has no --no-config-cache)
        cleanup.callback(lambda: [p.unlink(missing_ok=True) for p in Path("/tmp").glob("ray-config-*")
                                  if str(WORK) in p.read_text(errors="replace")])
        ray_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "EVENTRAY_"))}
        ray_cli = [str(VENV_BIN / "ray")]
        temp = rayhead.temp_dir(Settings(home=NODE_HOME))
        cleanup.callback(shutil.rmtree, temp, ignore_errors=True)
        cleanup.callback(lambda: sh([str(WORK / "stop-head.sh")], check=False))  # whatever `ray down` left

        def down_on_failure() -> None:
            if not downed:
                sh([*ray_cli, "down", "-y", str(config)], env=ray_env, check=False)
        downed = False
        cleanup.callback(down_on_failure)
        t_up = time.monotonic()
        sh([*ray_cli, "up", "-y", "--no-config-cache", str(config)], env=ray_env)
        say(f"ray up took {time.monotonic() - t_up:.0f}s")

        client_env = {**ray_env, **env, "EVENTRAY_RAY_ADDRESS": f"127.0.0.1:{GCS_PORT}",
                      "EVENTRAY_HTTP_PORT": str(SERVE_HTTP_PORT),
                      "EVENTRAY_HOME": str(WORK / "client")}
        eventray = str(VENV_BIN / "eventray")
        t_deploy = time.monotonic()
        sh([eventray, "deploy", "--wheel", str(wheel)], env=client_env)
        say(f"eventray deploy took {time.monotonic() - t_deploy:.0f}s")
        again = sh([eventray, "deploy", "--wheel", str(wheel)], env=client_env, capture=True)
        assert "nothing changed" in again.stdout, "a second deploy of the same wheel changed something"
        sh([eventray, "status", "--json"], env=client_env, capture=True)
        token = sh([eventray, "token", "cluster-e2e", "--role", "admin"], env=client_env,
                   capture=True).stdout.strip().splitlines()[-1]
        graphql_round_trip(f"http://127.0.0.1:{SERVE_HTTP_PORT}/graphql", token, run_id)

        sh([*ray_cli, "down", "-y", str(config)], env=ray_env)
        downed = True
        _proc.wait_until(lambda: not _proc.port_accepts(GCS_PORT), timeout=30, what="the e2e head to stop")
        ok = True
    if dev_head_up and not _proc.port_accepts(DEV_HEAD_PORT):
        say(f"WARNING: the dev head at 127.0.0.1:{DEV_HEAD_PORT} was up before the run and is down now")
        ok = False
    say(f"{'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
