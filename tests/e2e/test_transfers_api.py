"""Transfers through GraphQL on Serve: requestTransfer, the saga to completion, transfer(id),
transfers(accountId), transfer rows in accountActivity, the transferStatus subscription over
graphql-transport-ws, and who may see what (a customer acts on their own accounts only;
stuckSagas is for admins)."""

from __future__ import annotations

import asyncio
import json
import uuid

import websockets

from _gql import eventually, ok, send, token

PROTOCOL = "graphql-transport-ws"
TRANSFER = "id fromAccountId toAccountId amount currency status step score reason steps { step result attempt }"
REQUEST = f"mutation($input: RequestTransferInput!) {{ requestTransfer(input: $input) {{ {TRANSFER} }} }}"
TERMINAL = {"COMPLETED", "COMPENSATED", "FAILED_NEEDS_ATTENTION"}


def _code(body: dict) -> str:
    return body["errors"][0]["extensions"]["code"]


async def _statuses(ws_url: str, bearer: str, transfer_id: str) -> list[dict]:
    """Every transferStatus message until the server completes the subscription."""
    async with websockets.connect(ws_url, subprotocols=[PROTOCOL], open_timeout=20) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {bearer}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] == "connection_ack"
        op = uuid.uuid4().hex
        await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { transferStatus(id: $id) { id status step } }",
            "variables": {"id": transfer_id}}}))
        seen = []
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert msg["type"] in ("next", "complete"), msg
            if msg["type"] == "complete":
                return seen
            assert "errors" not in msg["payload"], msg
            seen.append(msg["payload"]["data"]["transferStatus"])


def test_a_transfer_completes_and_is_visible_to_its_owner(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    payer, payee = f"tp-{uid}", f"tq-{uid}"
    src, dst = f"tsrc-{uid}", f"tdst-{uid}"
    for user, acct in ((payer, src), (payee, dst)):
        ok(send(teller, "registerUser", userId=user, name="T", email=f"{user}@example.com"))
        ok(send(teller, "openAccount", accountId=acct, ownerId=user, currency="EUR"))
    ok(send(teller, "deposit", accountId=src, amount=1_000))
    customer = client_for(payer, "customer")
    tid = f"tr-{uid}"
    request = {"transferId": tid, "fromAccountId": src, "toAccountId": dst, "amount": 300, "currency": "EUR"}

    started = customer.data(REQUEST, {"input": request})["requestTransfer"]
    assert started["id"] == tid and started["fromAccountId"] == src and started["toAccountId"] == dst
    assert started["amount"] == 300 and started["status"] not in ("COMPENSATED", "FAILED_NEEDS_ATTENTION")
    # the same transfer id is the same transfer, not a second one
    assert customer.data(REQUEST, {"input": request})["requestTransfer"]["id"] == tid

    seen = asyncio.run(_statuses(api["ws"], token(payer, "customer"), tid))
    assert seen and {s["id"] for s in seen} == {tid}
    assert seen[-1]["status"] == "COMPLETED" and all(s["status"] not in TERMINAL for s in seen[:-1]), seen

    done = customer.data("query($id: ID!) { transfer(id: $id) { %s } }" % TRANSFER, {"id": tid})["transfer"]
    assert done["status"] == "COMPLETED" and done["reason"] is None and done["score"] is not None
    assert {s["step"] for s in done["steps"]} >= {"debit", "score", "credit"}
    listed = customer.data("query($a: ID!) { transfers(accountId: $a) { id status } }", {"a": src})["transfers"]
    assert {"id": tid, "status": "COMPLETED"} in listed
    # the payee sees it too, from the other side
    payee_view = client_for(payee, "customer").data(
        "query($a: ID!) { transfers(accountId: $a) { id } }", {"a": dst})["transfers"]
    assert {"id": tid} in payee_view

    def activity(acct: str) -> list[dict]:
        return teller.data(  # a teller reads both sides
            "query($a: ID!) { accountActivity(accountId: $a, first: 10) { items { kind amount balanceAfter "
            "transferId counterparty } } }", {"a": acct})["accountActivity"]["items"]

    out = eventually(lambda: [r for r in activity(src) if r["kind"] == "transfer_out"])
    assert out == [{"kind": "transfer_out", "amount": 300, "balanceAfter": 700, "transferId": tid,
                    "counterparty": dst}]
    into = eventually(lambda: [r for r in activity(dst) if r["kind"] == "transfer_in"])
    assert into == [{"kind": "transfer_in", "amount": 300, "balanceAfter": 300, "transferId": tid,
                     "counterparty": src}]
    deposit = [r for r in activity(src) if r["kind"] == "deposit"]
    assert deposit and deposit[0]["transferId"] is None and deposit[0]["counterparty"] is None


def test_transfer_ownership_and_admin_fields(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    alice, bob = f"ta-{uid}", f"tb-{uid}"
    for user in (alice, bob):
        ok(send(teller, "registerUser", userId=user, name="T", email=f"{user}@example.com"))
        ok(send(teller, "openAccount", accountId=f"acc-{user}", ownerId=user, currency="EUR"))
    ok(send(teller, "deposit", accountId=f"acc-{bob}", amount=500))
    alice_api = client_for(alice, "customer")
    # a customer may not move money out of someone else's account, nor list its transfers
    body = alice_api.run(REQUEST, {"input": {"fromAccountId": f"acc-{bob}", "toAccountId": f"acc-{alice}",
                                           "amount": 100, "currency": "EUR"}})
    assert _code(body) == "FORBIDDEN" and not (body.get("data") or {}).get("requestTransfer"), body
    body = alice_api.run("query($a: ID!) { transfers(accountId: $a) { id } }", {"a": f"acc-{bob}"})
    assert _code(body) == "FORBIDDEN", body
    # bob's own transfer (to carol, not alice) is not alice's to read
    carol = f"tc-{uid}"
    ok(send(teller, "registerUser", userId=carol, name="T", email=f"{carol}@example.com"))
    ok(send(teller, "openAccount", accountId=f"acc-{carol}", ownerId=carol, currency="EUR"))
    tid = client_for(bob, "customer").data(REQUEST, {"input": {
        "fromAccountId": f"acc-{bob}", "toAccountId": f"acc-{carol}", "amount": 50, "currency": "EUR"}}
    )["requestTransfer"]["id"]
    assert alice_api.data("query($id: ID!) { transfer(id: $id) { id } }", {"id": tid})["transfer"] is None
    # stuckSagas: admins only
    body = alice_api.run("{ stuckSagas { id } }")
    assert _code(body) == "FORBIDDEN" and not (body.get("data") or {}).get("stuckSagas"), body
    stuck = client_for(f"admin-{uid}", "admin").data("{ stuckSagas(olderThanSeconds: 3600) { id status } }")
    assert isinstance(stuck["stuckSagas"], list)
