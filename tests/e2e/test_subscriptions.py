"""Subscriptions over graphql-transport-ws through Serve, and an outside client (gql)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from _gql import ok, send, token

PROTOCOL = "graphql-transport-ws"


async def _open(url: str, bearer: str | None):
    ws = await websockets.connect(url, subprotocols=[PROTOCOL], open_timeout=20)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {bearer}"} if bearer else {}}))
    return ws


async def _subscribe(ws, query: str, variables: dict) -> str:
    assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] == "connection_ack"
    op = uuid.uuid4().hex
    await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
    return op


async def _next(ws) -> dict:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if msg["type"] in ("next", "error"):
            return msg


def test_events_and_account_balance_live(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    owner, acct = f"s-{uid}", f"sa-{uid}"
    ok(send(teller, "registerUser", userId=owner, name="Sub", email=f"s{uid}@example.com"))
    ok(send(teller, "openAccount", accountId=acct, ownerId=owner, currency="EUR"))
    rid = f"sub-{uid}"

    async def scenario() -> None:
        events = await _open(api["ws"], token(owner, "customer"))
        balance = await _open(api["ws"], token(owner, "customer"))
        await _subscribe(events, """subscription($id: ID) { events(aggregateType: "Account", aggregateId: $id) {
            id type aggregateType aggregateId version correlationId subject data timestamp offset } }""", {"id": acct})
        await _subscribe(balance, "subscription($id: ID!) { accountBalance(accountId: $id) { accountId balance version } }",
                         {"id": acct})
        first = await _next(balance)
        assert first["payload"]["data"]["accountBalance"] == {"accountId": acct, "balance": 0, "version": 1}
        await asyncio.sleep(0.5)
        r = teller.post('mutation { deposit(input: {accountId: "%s", amount: 250}) { __typename } }' % acct,
                        **{"x-request-id": rid})
        assert r.status_code == 200
        event = (await _next(events))["payload"]["data"]["events"]
        assert event["type"] == "MoneyDeposited" and event["aggregateId"] == acct and event["version"] == 2
        assert event["correlationId"] == rid and event["subject"] == f"teller-{uid}"
        assert event["data"]["amount"] == 250
        update = (await _next(balance))["payload"]["data"]["accountBalance"]
        assert update == {"accountId": acct, "balance": 250, "version": 2}
        await events.close()
        await balance.close()

    asyncio.run(scenario())


def test_subscription_auth(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    ok(send(teller, "registerUser", userId=f"x-{uid}", name="X", email=f"x{uid}@example.com"))
    ok(send(teller, "openAccount", accountId=f"xa-{uid}", ownerId=f"x-{uid}", currency="EUR"))

    async def scenario() -> None:
        # no token in connection_init: closed without an ack
        ws = await _open(api["ws"], None)
        with pytest.raises(ConnectionClosed):
            while True:
                assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] != "connection_ack"
        # a bad token in the handshake header: refused before the upgrade
        with pytest.raises(InvalidStatus):
            await websockets.connect(api["ws"], subprotocols=[PROTOCOL],
                                     additional_headers={"authorization": "Bearer garbage"})
        # another customer's account: a forbidden error, no data
        ws = await _open(api["ws"], token(f"mallory-{uid}", "customer"))
        await _subscribe(ws, "subscription { accountBalance(accountId: \"xa-%s\") { balance } }" % uid, {})
        msg = await _next(ws)
        assert msg["type"] == "error" or msg["payload"].get("errors"), msg
        assert "FORBIDDEN" in json.dumps(msg) and '"balance"' not in json.dumps(msg.get("payload", {}).get("data") or {})
        await ws.close()

    asyncio.run(scenario())


def test_outside_client_gql(api, client_for, uid):
    from gql import Client, gql
    from gql.transport.httpx import HTTPXAsyncTransport
    from gql.transport.websockets import WebsocketsTransport

    teller = client_for(f"teller-{uid}", "teller")
    owner, acct = f"g-{uid}", f"ga-{uid}"
    ok(send(teller, "registerUser", userId=owner, name="Gql", email=f"g{uid}@example.com"))
    ok(send(teller, "openAccount", accountId=acct, ownerId=owner, currency="EUR"))
    bearer = token(owner, "customer")

    async def scenario() -> None:
        http = HTTPXAsyncTransport(url=api["url"], headers={"authorization": f"Bearer {bearer}"})
        async with Client(transport=http, fetch_schema_from_transport=True) as session:
            result = await session.execute(gql('query($id: ID!) { account(id: $id, consistent: true) { id balance } }'),
                                           variable_values={"id": acct})
            assert result == {"account": {"id": acct, "balance": 0}}
        ws = WebsocketsTransport(url=api["ws"], init_payload={"Authorization": f"Bearer {bearer}"},
                                 subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
        async with Client(transport=ws) as session:
            sub = session.subscribe(gql('subscription($id: ID!) { accountBalance(accountId: $id) { balance version } }'),
                                    variable_values={"id": acct})
            seen = []
            async for item in sub:
                seen.append(item["accountBalance"])
                if len(seen) == 1:
                    ok(send(teller, "deposit", accountId=acct, amount=42))
                else:
                    break
            assert seen == [{"balance": 0, "version": 1}, {"balance": 42, "version": 2}]

    asyncio.run(scenario())
