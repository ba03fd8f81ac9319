"""A second domain on the real stack: the inventory app of tests/apps, deployed with
``eventray deploy --app inventory.app:app`` on the dev cluster, then driven over GraphQL on HTTP.

Its generated mutations, its projection's own SDL, its fulfilment saga to completion and to
compensation, ``eventray replay --app`` of its projection under reads, and a shard killed while
commands flow, with every acknowledged command applied once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _apps import remove_app
from _gql import Client, eventually, ok, send, token

APPS = Path(__file__).resolve().parents[1] / "apps"
APP = "inventory.app:app"
TOPIC = "inventory.events"
PRODUCT = "{ product(sku: $sku) { sku name available reserved } }"


def eventray(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "eventray.platform.cli", *args, "--app", APP], cwd=APPS, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"eventray {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def inventory(stack_settings) -> Iterator[dict[str, Any]]:
    """Deployed once: shards, the stock_levels runners, OrderFulfilment coordinators, the Serve app."""
    out = eventray("deploy", timeout=900).stdout
    url = next(line.split("GraphQL:", 1)[1].strip() for line in out.splitlines() if line.startswith("GraphQL:"))
    assert url.endswith("/inventory/graphql"), out
    yield {"url": url, "deploy_output": out, "run": uuid.uuid4().hex[:8]}
    remove_app(APP, "inventory")


def staff(inv: dict[str, Any]) -> Client:
    return Client(inv["url"], token(f"staff-{inv['run']}", "teller"))


def customer(inv: dict[str, Any], name: str) -> Client:
    return Client(inv["url"], token(f"{name}-{inv['run']}", "customer"))


def product(client: Client, sku: str) -> dict[str, Any] | None:
    return client.data(f"query($sku: ID!) {PRODUCT}", {"sku": sku})["product"]


def fulfilment(client: Client, order_id: str) -> dict[str, Any] | None:
    return client.data("query($o: ID!) { fulfilment(orderId: $o) { orderId status reason } }", {"o": order_id})[
        "fulfilment"]


def test_deploy_placed_every_piece_of_the_app(inventory) -> None:
    out = inventory["deploy_output"]
    assert "with the app inventory.app:app" in out, out
    # a first deploy on this stack starts everything; a later session's finds it running
    assert f"started shard shard:{TOPIC}:0" in out or "nothing changed" in out, out
    again = eventray("deploy").stdout
    assert "nothing changed" in again, again


def test_generated_mutations_and_the_projections_own_sdl(inventory) -> None:
    s, run = staff(inventory), inventory["run"]
    ok(send(s, "addProduct", productId=f"pen-{run}", name="Pen", stock=10))
    refused = send(s, "addProduct", productId=f"pen-{run}", name="Pen", stock=10)
    assert refused["__typename"] == "ConflictError", refused
    bad = send(s, "addProduct", productId=f"bad-{run}", name="", stock=-1)
    assert bad["__typename"] == "ValidationError" and bad["field"] == "name", bad
    denied = send(customer(inventory, "eve"), "restock", productId=f"pen-{run}", quantity=5)
    assert denied["__typename"] == "ForbiddenError", denied
    ok(send(s, "restock", productId=f"pen-{run}", quantity=5))
    assert eventually(lambda: product(s, f"pen-{run}") == {"sku": f"pen-{run}", "name": "Pen", "available": 15,
                                                           "reserved": 0})


def _place(client: Client, order_id: str, skus: list[str], quantities: list[int]) -> dict[str, Any]:
    return client.data("mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { orderId status } }",
                       {"i": {"orderId": order_id, "skus": skus, "quantities": quantities}})["placeOrder"]


def test_the_fulfilment_saga_completes_and_compensates(inventory) -> None:
    s, run = staff(inventory), inventory["run"]
    for sku, stock in (("cup", 5), ("mug", 1)):
        ok(send(s, "addProduct", productId=f"{sku}-{run}", name=sku, stock=stock))
    alice = customer(inventory, "alice")
    assert _place(alice, f"o1-{run}", [f"cup-{run}", f"mug-{run}"], [2, 1])["status"] == "PLACING"
    assert eventually(lambda: (fulfilment(alice, f"o1-{run}") or {}).get("status") == "COMPLETED", timeout_s=60)
    # the second order's last line cannot be had: the first line is released, the order rejected
    _place(alice, f"o2-{run}", [f"cup-{run}", f"mug-{run}"], [1, 1])
    done = eventually(lambda: (f := fulfilment(alice, f"o2-{run}")) and f["status"] == "COMPENSATED" and f,
                      timeout_s=60)
    assert "OutOfStock" in done["reason"], done
    assert eventually(lambda: product(s, f"cup-{run}") == {"sku": f"cup-{run}", "name": "cup", "available": 3,
                                                           "reserved": 2})
    assert eventually(lambda: product(s, f"mug-{run}") == {"sku": f"mug-{run}", "name": "mug", "available": 0,
                                                           "reserved": 1})
    order = alice.data('query($o: ID!) { order(id: $o) { status reason } }', {"o": f"o2-{run}"})["order"]
    assert order["status"] == "REJECTED" and "OutOfStock" in order["reason"], order


def test_replay_of_the_projection_under_reads(inventory) -> None:
    s, run = staff(inventory), inventory["run"]
    sku = f"book-{run}"
    ok(send(s, "addProduct", productId=sku, name="Book", stock=7))
    expected = {"sku": sku, "name": "Book", "available": 7, "reserved": 0}
    eventually(lambda: product(s, sku) == expected)
    stop, reads, wrong = threading.Event(), [0], []

    def reader() -> None:
        c = staff(inventory)
        while not stop.is_set():
            try:
                got = product(c, sku)
            except AssertionError as e:
                got = str(e)
            reads[0] += 1
            if got != expected:
                wrong.append(got)
            time.sleep(0.02)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        out = eventray("replay", "stock_levels").stdout
    finally:
        stop.set()
        thread.join()
    assert "is current" in out, out
    assert reads[0] > 10 and not wrong, (reads[0], wrong[:3])


def test_a_killed_shard_loses_no_acknowledged_command(inventory) -> None:
    import ray

    from eventray.platform.composition import connect_ray
    from eventray.platform.runtime.actors import NAMESPACE
    from eventray.platform.runtime.shards import shard_name
    from eventray.platform.settings import Settings

    s, run = staff(inventory), inventory["run"]
    skus = [f"bolt{i}-{run}" for i in range(8)]
    for sku in skus:
        ok(send(s, "addProduct", productId=sku, name="bolt", stock=0))
    acked: dict[str, int] = dict.fromkeys(skus, 0)
    retries = [0]

    def restock(n: int) -> None:
        sku, cid = skus[n % len(skus)], f"restock-{run}-{n}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = send(s, "restock", productId=sku, quantity=1, commandId=cid)
            if r["__typename"] == "CommandSuccess":
                # a retry of an attempt that committed before the kill answers duplicate=True: that
                # command is acknowledged (and applied) once all the same
                acked[sku] += 1
                return
            assert r["__typename"] == "RetryableError", r
            retries[0] += 1
            time.sleep(0.2)
        raise AssertionError(f"{cid} was never acknowledged")

    connect_ray(Settings())
    threads = [threading.Thread(target=lambda k=k: [restock(k * 25 + i) for i in range(25)]) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    ray.kill(ray.get_actor(shard_name(TOPIC, 0), namespace=NAMESPACE), no_restart=False)
    for t in threads:
        t.join()
    assert sum(acked.values()) == 100
    for sku in skus:  # the read model holds each acknowledged restock exactly once
        assert eventually(lambda sku=sku: (product(s, sku) or {}).get("available") == acked[sku], timeout_s=60)
