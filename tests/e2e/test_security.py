"""Authentication, ownership, rate limiting, query limits and the HTTP middleware."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import jwt
import pytest

from _gql import RATE_BURST, Client, eventually, ok, send, token

ME = "{ me { subject } }"


@pytest.mark.parametrize("make", [
    lambda: None,
    lambda: token("x", "admin", ttl_s=-120),
    lambda: jwt.encode({"sub": "x", "role": "admin", "aud": "eventray", "exp": 9_999_999_999},
                       "not-the-secret", algorithm="HS256"),
    lambda: token("x", "admin", audience="someone-else"),
    lambda: "not.a.jwt",
], ids=["missing", "expired", "wrong-signature", "wrong-audience", "garbage"])
def test_bad_tokens_get_401(api, make):
    r = Client(api["url"], make()).post(ME)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in r.json()


def test_rs256_from_jwks(api, rsa_key):
    good = jwt.encode({"sub": "rs-user", "role": "teller", "aud": "eventray", "exp": 9_999_999_999},
                      rsa_key["private"], algorithm="RS256", headers={"kid": rsa_key["kid"]})
    assert Client(api["url"], good).data(ME)["me"]["subject"] == "rs-user"
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"sub": "rs-user", "role": "admin", "aud": "eventray", "exp": 9_999_999_999},
                        other, algorithm="RS256", headers={"kid": rsa_key["kid"]})
    assert Client(api["url"], forged).post(ME).status_code == 401


def test_customer_cannot_touch_anothers_data(client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    alice, bob = f"alice-{uid}", f"bob-{uid}"
    for who in (alice, bob):
        ok(send(teller, "registerUser", userId=who, name=who, email=f"{who}@example.com"))
    ok(send(teller, "openAccount", accountId=f"acc-{bob}", ownerId=bob, currency="EUR"))
    ok(send(teller, "deposit", accountId=f"acc-{bob}", amount=777))
    a = client_for(alice, "customer")
    # her own things work
    ok(send(a, "openAccount", accountId=f"acc-{alice}", ownerId=alice, currency="EUR"))
    ok(send(a, "deposit", accountId=f"acc-{alice}", amount=5))
    ok(send(a, "updateProfile", userId=alice, name="Alice"))
    assert a.data(f'{{ account(id: "acc-{alice}", consistent: true) {{ balance }} }}')["account"]["balance"] == 5
    # Bob's are forbidden, with no data
    for q in (f'{{ account(id: "acc-{bob}") {{ balance ownerId }} }}',
              f'{{ account(id: "acc-{bob}", consistent: true) {{ balance }} }}',
              f'{{ account(id: "no-such-{uid}", consistent: true) {{ balance }} }}',
              f'{{ user(id: "{bob}") {{ email }} }}',
              f'{{ accounts(ownerId: "{bob}") {{ id }} }}',
              f'{{ accountActivity(accountId: "acc-{bob}") {{ items {{ amount }} }} }}',
              '{ users { items { id } } }', '{ projections { name } }'):
        body = a.run(q)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (q, body)
        assert "777" not in str(body) and f"{bob}@example.com" not in str(body)
        assert not any((body.get("data") or {}).values())
    for name, inp in (("deposit", {"accountId": f"acc-{bob}", "amount": 1}),
                      ("withdraw", {"accountId": f"acc-{bob}", "amount": 1}),
                      ("closeAccount", {"accountId": f"acc-{bob}"}),
                      ("openAccount", {"accountId": f"x-{uid}", "ownerId": bob, "currency": "EUR"}),
                      ("changeEmail", {"userId": bob, "email": "evil@example.com"}),
                      ("freezeAccount", {"accountId": f"acc-{alice}", "reason": "self"})):
        result = send(a, name, **inp)
        assert result["__typename"] == "ForbiddenError", (name, result)
    assert teller.data(f'{{ account(id: "acc-{bob}", consistent: true) {{ balance }} }}')["account"]["balance"] == 777


def test_rate_limit_answers_429_with_retry_after(api, uid):
    headers = {"authorization": f"Bearer {token(f'greedy-{uid}', 'teller')}"}

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            return await asyncio.gather(*(http.post(api["url"], json={"query": ME}) for _ in range(RATE_BURST * 3)))

    responses = asyncio.run(flood())
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert sum(r.status_code == 200 for r in responses) >= RATE_BURST
    # another subject is not affected
    assert Client(api["url"], token(f"other-{uid}", "teller")).post(ME).status_code == 200


def test_depth_and_cost_limits(client_for, uid):
    admin = client_for(f"admin-{uid}", "admin")
    deep = ('{ user(id: "x") { accounts { owner { accounts { owner { accounts { owner { accounts '
            '{ owner { id } } } } } } } } } }')
    body = admin.post(deep).json()
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP" and "data" not in body
    costly = "{ users(first: 100) { items { accounts { activity(first: 100) { items { id amount } } } } } }"
    body = admin.post(costly).json()
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    # introspection (GraphiQL) is not counted against the depth limit
    assert admin.data("{ __schema { types { name fields { type { ofType { ofType { name } } } } } } }")


def test_request_id_is_echoed_or_generated(api, client_for, uid):
    admin = client_for(f"admin-{uid}", "admin")
    rid = f"e2e-{uuid.uuid4().hex}"
    r = admin.post("{ me { requestId } }", **{"x-request-id": rid})
    assert r.headers["x-request-id"] == rid and r.json()["data"]["me"]["requestId"] == rid
    generated = admin.post("{ me { requestId } }")
    assert len(generated.headers["x-request-id"]) >= 16
    assert generated.json()["data"]["me"]["requestId"] == generated.headers["x-request-id"]


def test_cors_security_headers_gzip_health_metrics(api):
    http = httpx.Client(timeout=10)
    allowed = "http://localhost:8000"
    pre = http.options(api["url"], headers={"origin": allowed, "access-control-request-method": "POST"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == allowed
    evil = http.options(api["url"], headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    page = http.get(api["url"], headers={"accept": "text/html", "accept-encoding": "gzip"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert page.headers["content-encoding"] == "gzip"
    for h in ("x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy"):
        assert h in page.headers
    assert http.get(f"{api['base']}/healthz").json() == {"status": "ok"}
    metrics = http.get(f"{api['base']}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE eventray_http_requests_total counter" in metrics.text
    assert 'eventray_http_requests_total{path="/graphql"' in metrics.text


# --- the GraphQL attack list (OWASP GraphQL cheat sheet), against the deployed app ------------------


def _codes(r: httpx.Response) -> set[str]:
    return {e["extensions"]["code"] for e in r.json()["errors"]}


def test_a_20_mb_body_gets_413(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    body = json.dumps({"query": ME, "variables": {"pad": "x" * (20 * 1024 * 1024)}})
    r = teller.http.post(api["url"], content=body, headers={**teller.headers, "content-type": "application/json"})
    assert r.status_code == 413 and _codes(r) == {"PAYLOAD_TOO_LARGE"}
    assert teller.data(ME)["me"]["subject"] == f"teller-{uid}"  # the replica keeps serving


def test_alias_amplification_is_refused(client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    r = teller.post("{ " + " ".join(f"m{i}: me {{ subject }}" for i in range(500)) + " }")
    assert r.status_code == 400 and "TOO_MANY_ALIASES" in _codes(r) and "data" not in r.json()
    # the request, written short enough to pass the length limit (20,000 characters)
    consistent = "{" + "".join(f'a{i}:account(id:"{i}",consistent:true){{balance}}' for i in range(300)) + "}"
    r = teller.post(consistent)
    assert r.status_code == 400 and {"TOO_MANY_ALIASES", "QUERY_TOO_COSTLY"} <= _codes(r)
    # under the alias limit, consistent reads still cost 20 each: 30 of them fit in 3000, 150 would not
    few = "{ " + " ".join(f'a{i}: account(id: "acc-{uid}-{i}", consistent: true) {{ balance }}' for i in range(30)) + " }"
    assert teller.post(few).status_code == 200


def test_a_mutation_over_get_is_refused_with_405(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    q = 'mutation { deposit(input: {accountId: "acc-x", amount: 1}) { __typename } }'
    for query in (q, "query A { me { subject } } " + q.replace("mutation", "mutation B")):
        r = teller.http.get(api["url"], params={"query": query}, headers=teller.headers)
        assert r.status_code == 405 and r.headers["allow"] == "POST" and _codes(r) == {"METHOD_NOT_ALLOWED"}
        assert "never run over GET" in r.json()["errors"][0]["message"]


def test_a_form_post_is_refused(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    r = teller.http.post(api["url"], content=b"query=%7B+me+%7Bsubject%7D%7D",
                         headers={**teller.headers, "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and _codes(r) == {"UNSUPPORTED_MEDIA_TYPE"}
    r = teller.http.post(api["url"], files={"operations": (None, json.dumps({"query": ME})), "map": (None, "{}")},
                         headers=teller.headers)
    assert r.status_code == 400 and _codes(r) == {"CSRF_REFUSED"}


def test_etag_304_until_a_command_moves_the_projection(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    owner = f"etag-{uid}"
    ok(send(teller, "registerUser", userId=owner, name=owner, email=f"{owner}@example.com"))
    ok(send(teller, "openAccount", accountId=f"acc-{owner}", ownerId=owner, currency="EUR"))
    params = {"query": f'{{ account(id: "acc-{owner}") {{ balance }} }}'}

    def get(**headers: str) -> httpx.Response:
        return teller.http.get(api["url"], params=params, headers={**teller.headers, **headers})

    first = eventually(lambda: (r := get()).json()["data"]["account"] and r)
    assert first.headers["cache-control"] == "private, no-cache" and "authorization" in first.headers["vary"].lower()

    def revalidated() -> tuple[str, httpx.Response] | None:
        # the ETag moves whenever the projection applies any event (other tests' too): retry until it holds still
        tag = get().headers["etag"]
        r = get(**{"if-none-match": tag})
        return (tag, r) if r.status_code == 304 else None

    etag, again = eventually(revalidated)
    assert again.content == b"" and again.headers["etag"] == etag
    ok(send(teller, "deposit", accountId=f"acc-{owner}", amount=42))
    moved = eventually(lambda: (r := get(**{"if-none-match": etag})).status_code == 200 and r)
    assert moved.headers["etag"] != etag and moved.json()["data"]["account"]["balance"] == 42
    # another caller gets another ETag for the same query; consistent reads and POSTs get none
    other = client_for(f"teller2-{uid}", "teller")
    assert other.http.get(api["url"], params=params, headers=other.headers).headers["etag"] != moved.headers["etag"]
    consistent = {"query": f'{{ account(id: "acc-{owner}", consistent: true) {{ balance }} }}'}
    assert "etag" not in teller.http.get(api["url"], params=consistent, headers=teller.headers).headers
    assert "etag" not in teller.post(params["query"]).headers


def test_subscriptions_are_capped_per_subject(api, uid):
    import websockets

    cap = api["serving"].max_subscriptions_per_subject
    bearer = token(f"subs-{uid}", "teller")

    async def run() -> list[dict]:
        ws = await websockets.connect(api["ws"], subprotocols=["graphql-transport-ws"], open_timeout=20)
        try:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {bearer}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] == "connection_ack"
            for i in range(cap + 1):
                await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": {
                    "query": 'subscription { events(aggregateType: "Account") { id } }'}}))
            while True:  # events other tests commit may come first
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if msg["type"] != "next":
                    return [msg]
        finally:
            await ws.close()

    (msg,) = asyncio.run(run())
    assert msg["type"] == "error" and msg["id"] == str(cap)
    assert msg["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
