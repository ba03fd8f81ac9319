"""Operations on the separate stack: the dashboard's metrics exist, logs follow a request,
each chaos command recovers, and refusals."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventray.serving.api.principal import mint_token
from eventray.serving.settings import DEV_JWT_SECRET

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "eventray.json"
_METRIC = re.compile(r"\b(ray_[a-z0-9_]+)")


def _mutation(stack: dict[str, Any], name: str, input_type: str, payload: dict[str, Any],
              request_id: str) -> dict[str, Any]:
    token = mint_token("ops-test", "teller", secret=DEV_JWT_SECRET)
    q = f"mutation Ops{name.title()}($i: {input_type}!) {{ {name}(input: $i) {{ __typename }} }}"
    r = httpx.post(stack["graphql"], json={"query": q, "variables": {"i": payload},
                                           "operationName": f"Ops{name.title()}"},
                   headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id}, timeout=60,
                   verify=stack["verify"])
    r.raise_for_status()
    return r.json()


def dashboard_metrics() -> dict[str, set[str]]:
    """Panel title -> the metric names its queries name (histogram series by family name)."""
    doc = json.loads(DASHBOARD.read_text())
    return {p["title"]: {m for t in p["targets"] for m in _METRIC.findall(t["expr"])} for p in doc["panels"]}


def test_every_panel_names_an_exported_metric(cli, chaos_stack) -> None:
    url, rid = chaos_stack["graphql"], f"dash-{uuid.uuid4().hex[:8]}"
    assert url.startswith("https://"), url
    acct = f"dash-{uuid.uuid4().hex[:6]}"
    _mutation(chaos_stack, "openAccount", "OpenAccountInput", {"accountId": acct, "ownerId": "o", "currency": "EUR"}, rid)
    refused = _mutation(chaos_stack, "deposit", "DepositInput", {"accountId": f"missing-{acct}", "amount": 5}, rid)
    assert refused["data"]["deposit"]["__typename"] == "NotFoundError", refused  # a domain error: typed data
    token = mint_token("ops-test", "teller", secret=DEV_JWT_SECRET)
    invalid = httpx.post(url, json={"query": "query Bad { noSuchField }", "operationName": "Bad"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60, verify=chaos_stack["verify"]).json()
    assert invalid["errors"], invalid  # a GraphQL error: counted by code in the errors panel
    panels = dashboard_metrics()
    wanted = set().union(*panels.values())
    deadline, text = time.monotonic() + 120, ""
    while time.monotonic() < deadline:
        text = httpx.get(chaos_stack["metrics"], timeout=10).text
        exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
        if wanted <= exported:
            break
        time.sleep(3)
    missing = {title: sorted(names - exported) for title, names in panels.items() if names - exported}
    assert all(panels.values()), "a panel names no metric"
    assert not missing, f"panels query metrics {chaos_stack['metrics']} does not export: {missing}"


def test_a_mutation_is_followed_from_graphql_through_the_shard_to_the_projection(cli, chaos_stack) -> None:
    rid = f"corr-{uuid.uuid4().hex[:10]}"
    acct = f"corr-{uuid.uuid4().hex[:6]}"
    body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                     {"accountId": acct, "ownerId": "o", "currency": "EUR"}, rid)
    assert body["data"]["openAccount"]["__typename"] == "CommandSuccess", body
    components: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = cli("logs", "--correlation", rid, "--json")
        lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        components = {d["component"] for d in lines}
        if {"eventray.graphql", "eventray.shard", "eventray.projection"} <= components:
            break
        time.sleep(2)
    assert {"eventray.graphql", "eventray.shard", "eventray.projection"} <= components, components
    for d in lines:
        assert {"ts", "level", "component", "actor", "msg"} <= set(d), d


@pytest.mark.parametrize("args", [
    ("kill-shard", "0"), ("kill-runner", "account_balances"), ("kill-coordinator", "--saga", "TransferMoney"),
    ("pause-kafka", "2"), ("restart-kafka",), ("restart-postgres",), ("reset-kafka", "3"),
    ("loss-kafka", "6", "--share", "1"),
    ("starve-shard", "0", "--for", "4"), ("partition-postgres", "3"), ("disk-full-postgres", "4"),
])
def test_each_chaos_command_recovers(cli, chaos_stack, args) -> None:
    out = cli("chaos", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recovered after" in out.stdout
    # the write path answers again through GraphQL
    acct = f"rec-{uuid.uuid4().hex[:6]}"
    body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                     {"accountId": acct, "ownerId": "o", "currency": "EUR"}, f"rec-{uuid.uuid4().hex[:8]}")
    assert body["data"]["openAccount"]["__typename"] == "CommandSuccess", body


def test_delay_kafka_slows_the_write_path_then_recovers(chaos_stack) -> None:
    import subprocess
    import sys

    eventray = str(Path(sys.executable).parent / "eventray")

    def open_account() -> float:
        t0 = time.monotonic()
        body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                         {"accountId": f"dly-{uuid.uuid4().hex[:6]}", "ownerId": "o", "currency": "EUR"},
                         f"dly-{uuid.uuid4().hex[:8]}")
        assert body["data"]["openAccount"]["__typename"] == "CommandSuccess", body
        return time.monotonic() - t0

    fault = subprocess.Popen([eventray, "chaos", "delay-kafka", "400", "--for", "8"], env=chaos_stack["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)  # the CLI connects, checks the stack is its own, adds the delay
    delayed = open_account()
    out, err = fault.communicate(timeout=120)
    assert fault.returncode == 0, out + err
    assert "recovered after" in out
    # a command is a Kafka transaction: several requests to the broker, each 400 ms late
    assert delayed >= 0.4, f"a command took {delayed:.3f}s while every request to the broker was 400 ms late"
    open_account()  # answers again once the delay is removed


def test_commands_are_acknowledged_while_postgres_is_down(chaos_stack) -> None:
    """Kafka is the source of truth: a PostgreSQL outage stops neither the command path nor
    GraphQL's mutations; snapshots and read models catch up afterwards."""
    import subprocess
    import sys

    eventray = str(Path(sys.executable).parent / "eventray")
    fault = subprocess.Popen([eventray, "chaos", "outage-postgres", "12"], env=chaos_stack["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from urllib.parse import urlsplit

    from eventray.platform.devstack import _proc

    pg = urlsplit(chaos_stack["dsn"]).port
    assert pg is not None, chaos_stack["dsn"]

    deadline = time.monotonic() + 30
    while _proc.port_accepts(pg) and time.monotonic() < deadline:  # the CLI connects, then stops it
        time.sleep(0.2)
    assert not _proc.port_accepts(pg), "PostgreSQL was not stopped"
    acked, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < 6:
        body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                         {"accountId": f"pgout-{uuid.uuid4().hex[:6]}", "ownerId": "o", "currency": "EUR"},
                         f"pgout-{uuid.uuid4().hex[:8]}")
        assert body["data"]["openAccount"]["__typename"] == "CommandSuccess", body
        acked += 1
    assert not _proc.port_accepts(pg), "the outage ended before the commands were sent; lengthen it"
    out, err = fault.communicate(timeout=120)
    assert fault.returncode == 0, out + err
    assert "recovered after" in out
    assert acked >= 3, f"{acked} commands acknowledged in 6 s with PostgreSQL down"


def test_commands_are_acknowledged_while_postgres_is_cut_off_and_the_read_model_catches_up(chaos_stack) -> None:
    """partition-postgres: the stack's Toxiproxy in front of PostgreSQL refuses every client while
    the server runs on; commands are acknowledged meanwhile, and account_balances has them after."""
    import os
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from eventray.platform.devstack import _proc

    eventray = str(Path(sys.executable).parent / "eventray")
    client_port = urlsplit(chaos_stack["dsn"]).port  # the clients' DSN: the proxy's port
    server_port = int(chaos_stack["env"]["EVENTRAY_POSTGRES_PORT"])
    assert client_port == server_port + 2, (chaos_stack["dsn"], server_port)
    assert _proc.port_accepts(client_port) and _proc.port_accepts(server_port)
    fault = subprocess.Popen([eventray, "chaos", "partition-postgres", "12"], env=chaos_stack["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while _proc.port_accepts(client_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _proc.port_accepts(client_port), "the proxy did not cut PostgreSQL off"
    assert _proc.port_accepts(server_port), "partition-postgres stopped the server; it must only cut the clients"
    accounts, t0 = [], time.monotonic()
    while time.monotonic() - t0 < 6:
        acct = f"pgcut-{uuid.uuid4().hex[:6]}"
        body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                         {"accountId": acct, "ownerId": "o", "currency": "EUR"}, f"pgcut-{uuid.uuid4().hex[:8]}")
        assert body["data"]["openAccount"]["__typename"] == "CommandSuccess", body
        accounts.append(acct)
    assert not _proc.port_accepts(client_port), "the partition ended before the commands were sent; lengthen it"
    out, err = fault.communicate(timeout=120)
    assert fault.returncode == 0, out + err
    assert "partition-postgres" in out and "recovered after" in out, out
    assert len(accounts) >= 3, f"{len(accounts)} commands acknowledged in 6 s with PostgreSQL cut off"
    token = mint_token("ops-test", "teller", secret=DEV_JWT_SECRET)
    q = "query($a: ID!) { account(id: $a) { id } }"
    missing, deadline = set(accounts), time.monotonic() + float(os.environ.get("EVENTRAY_CHAOS_CATCHUP_S", "60"))
    while missing and time.monotonic() < deadline:
        for acct in sorted(missing):
            r = httpx.post(chaos_stack["graphql"], json={"query": q, "variables": {"a": acct}},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=chaos_stack["verify"])
            if (r.json().get("data") or {}).get("account"):
                missing.discard(acct)
        time.sleep(0.5)
    assert not missing, f"account_balances lacks {len(missing)} of the {len(accounts)} accounts opened during the cut"


def test_a_full_kafka_disk_gets_retryable_answers_and_no_false_acknowledgement(chaos_stack) -> None:
    """disk-full-kafka: while the broker's log directory is full (and while the broker, which stops
    when its only log directory fails, is down until the disk is freed), a command is either
    acknowledged, and then it is in the log, or answered with a typed RetryableError. Every
    acknowledged one is there afterwards (a consistent read of its shard), and commands flow again."""
    import subprocess
    import sys

    eventray = str(Path(sys.executable).parent / "eventray")
    ballast = Path(chaos_stack["env"]["EVENTRAY_HOME"]) / "data" / "kafka" / ".eventray-chaos-ballast"
    fault = subprocess.Popen([eventray, "chaos", "disk-full-kafka", "8"], env=chaos_stack["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ballast.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ballast.exists(), "disk-full-kafka wrote no ballast"
    answers: dict[str, str] = {}
    sent_while_full = 0
    while fault.poll() is None:  # the whole window: full, then the broker started again
        acct = f"dfk-{uuid.uuid4().hex[:6]}"
        full = ballast.exists()
        try:
            body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                             {"accountId": acct, "ownerId": "o", "currency": "EUR"}, f"dfk-{uuid.uuid4().hex[:8]}")
        except httpx.ReadTimeout:  # the ingress gave up waiting: not an acknowledgement either
            answers[acct] = "ReadTimeout"
            continue
        answers[acct] = body["data"]["openAccount"]["__typename"]
        sent_while_full += full
    out, err = fault.communicate(timeout=300)
    assert fault.returncode == 0, out + err
    assert "disk-full-kafka" in out and "recovered after" in out, out
    assert set(answers.values()) <= {"CommandSuccess", "RetryableError", "ReadTimeout"}, answers
    assert sent_while_full >= 3, f"only {sent_while_full} commands were sent while the disk was full"
    token = mint_token("ops-test", "teller", secret=DEV_JWT_SECRET)
    q = "query($a: ID!) { account(id: $a, consistent: true) { id } }"
    for acct in [a for a, k in answers.items() if k == "CommandSuccess"]:
        r = httpx.post(chaos_stack["graphql"], json={"query": q, "variables": {"a": acct}},
                       headers={"Authorization": f"Bearer {token}"}, timeout=60, verify=chaos_stack["verify"])
        assert (r.json().get("data") or {}).get("account"), f"{acct} was acknowledged and is not there: {r.text}"
    body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                     {"accountId": f"dfk-{uuid.uuid4().hex[:6]}", "ownerId": "o", "currency": "EUR"},
                     f"dfk-{uuid.uuid4().hex[:8]}")
    assert body["data"]["openAccount"]["__typename"] == "CommandSuccess", body


def test_an_oom_killed_projection_host_comes_back_and_its_read_model_equals_the_log(cli, chaos_stack) -> None:
    """oom-runner: while deposits flow, account_balances' host is put under a memory limit (a
    memory cgroup of its own) and driven past it until the kernel's OOM killer ends it; Ray
    restarts it, and each account's read-model balance and version come to equal its shard's
    (the fold of the log)."""
    import threading

    accounts = [f"oom-{uuid.uuid4().hex[:6]}" for _ in range(4)]
    for acct in accounts:
        body = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                         {"accountId": acct, "ownerId": "o", "currency": "EUR"}, f"oom-{uuid.uuid4().hex[:8]}")
        assert body["data"]["openAccount"]["__typename"] == "CommandSuccess", body
    stop = threading.Event()
    answers: list[str] = []

    def deposits() -> None:
        i = 0
        while not stop.is_set():
            body = _mutation(chaos_stack, "deposit", "DepositInput",
                             {"accountId": accounts[i % len(accounts)], "amount": "5"}, f"oom-{uuid.uuid4().hex[:8]}")
            answers.append(body["data"]["deposit"]["__typename"])
            i += 1

    load = [threading.Thread(target=deposits, daemon=True) for _ in range(4)]
    for t in load:
        t.start()
    try:
        out = cli("chaos", "oom-runner", "account_balances")
    finally:
        stop.set()
        for t in load:
            t.join(timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OOM-killed" in out.stdout and "recovered after" in out.stdout, out.stdout
    assert answers and set(answers) <= {"CommandSuccess", "RetryableError"}, answers
    token = mint_token("ops-test", "teller", secret=DEV_JWT_SECRET)
    q = "query($a: ID!) { log: account(id: $a, consistent: true) { balance version } " \
        "model: account(id: $a) { balance version } }"
    pending, deadline = set(accounts), time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for acct in sorted(pending):
            r = httpx.post(chaos_stack["graphql"], json={"query": q, "variables": {"a": acct}},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=chaos_stack["verify"])
            data = r.json()["data"]
            if data["model"] == data["log"]:
                pending.discard(acct)
        time.sleep(0.5)
    assert not pending, f"account_balances differs from the log for {sorted(pending)} after the OOM kill"


def test_a_killed_replica_loses_no_command_that_clients_resend_with_its_command_id(cli, chaos_stack) -> None:
    import threading

    acct = f"rep-{uuid.uuid4().hex[:6]}"
    opened = _mutation(chaos_stack, "openAccount", "OpenAccountInput",
                       {"accountId": acct, "ownerId": "o", "currency": "EUR"}, f"{acct}-open")
    assert opened["data"]["openAccount"]["__typename"] == "CommandSuccess", opened
    amounts, resent, failures = list(range(1, 61)), [0], []

    def client() -> None:
        for i, amount in enumerate(amounts):
            cid, deadline = f"{acct}-dep-{i}", time.monotonic() + 120
            while True:
                try:
                    body = _mutation(chaos_stack, "deposit", "DepositInput",
                                     {"accountId": acct, "amount": amount, "commandId": cid}, cid)
                    if (body.get("data") or {}).get("deposit", {}).get("__typename") == "CommandSuccess":
                        break
                except httpx.HTTPError:
                    pass  # the replica died under the request: send it again, same command id
                resent[0] += 1
                if time.monotonic() > deadline:
                    failures.append(cid)
                    return
                time.sleep(0.2)
            time.sleep(0.05)

    sender = threading.Thread(target=client)
    sender.start()
    time.sleep(1.0)
    out = cli("chaos", "kill-replica")
    sender.join(timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recovered after" in out.stdout
    assert not failures and not sender.is_alive(), failures
    token = mint_token("ops-test", "teller", secret=DEV_JWT_SECRET)
    read = httpx.post(chaos_stack["graphql"], json={"query": f'{{ account(id: "{acct}", consistent: true) {{ balance }} }}'},
                      headers={"Authorization": f"Bearer {token}"}, timeout=60, verify=chaos_stack["verify"]).json()
    # every deposit applied exactly once, however many times it was sent
    assert int(read["data"]["account"]["balance"]) == sum(amounts), (read, resent[0])


def test_chaos_refuses_a_stack_it_did_not_start(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTRAY_")}
    env.update(EVENTRAY_HOME=str(tmp_path), EVENTRAY_KAFKA_PORT="19092", EVENTRAY_RAY_PORT="26379")
    eventray = str(Path(sys.executable).parent / "eventray")
    for args in (("pause-kafka", "1"), ("restart-kafka",), ("restart-postgres",), ("kill-shard", "0")):
        out = subprocess.run([eventray, "chaos", *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "refusing" in out.stderr or "start it with" in out.stderr, (args, out.stderr)


def _listeners(pids: set[int]) -> set[int]:
    """TCP ports the processes ``pids`` listen on."""
    import subprocess

    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        if pids & {int(p) for p in re.findall(r"pid=(\d+)", line)}:
            ports.add(int(line.split()[3].rpartition(":")[2]))
    return ports


def test_the_ingress_serves_https_only_through_the_proxy_and_the_replica_port(chaos_stack) -> None:
    from eventray.platform.devstack import _proc, rayhead
    from eventray.platform.settings import Settings

    url = chaos_stack["graphql"]
    health = url.removesuffix("/graphql") + "/healthz"
    assert health.startswith("https://"), url
    assert httpx.get(health, verify=chaos_stack["verify"], timeout=30).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # not a certificate of the public trust
        httpx.get(health, timeout=30)
    plain = health.replace("https://", "http://", 1)
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
        httpx.get(plain, timeout=30)
    # the replica's own (direct-ingress) port: a listener of this stack's Ray processes in Serve's range
    head = rayhead.temp_dir(Settings(home=chaos_stack["env"]["EVENTRAY_HOME"]))
    pids = set(_proc.with_descendants(_proc.pids_matching(str(head))))
    direct = sorted(p for p in _listeners(pids) if 30000 <= p <= 31000)
    assert direct, f"no direct-ingress listener among the chaos stack's processes ({sorted(_listeners(pids))})"
    answered = []
    for port in direct:
        try:
            r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=chaos_stack["verify"], timeout=30)
        except httpx.HTTPError:
            continue
        answered.append((port, r.status_code))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
    assert any(code == 200 for _, code in answered), (direct, answered)
