"""Every query over HTTP through Serve, read models and consistent reads."""

from __future__ import annotations

from _gql import eventually, ok, send


def _setup(client, uid: str) -> tuple[str, str, str]:
    owner, a1, a2 = f"q-{uid}", f"qa1-{uid}", f"qa2-{uid}"
    ok(send(client, "registerUser", userId=owner, name=f"Query {uid}", email=f"q{uid}@example.com"))
    ok(send(client, "openAccount", accountId=a1, ownerId=owner, currency="EUR"))
    ok(send(client, "openAccount", accountId=a2, ownerId=owner, currency="EUR"))
    for amount in (100, 200, 300):
        ok(send(client, "deposit", accountId=a1, amount=amount))
    ok(send(client, "withdraw", accountId=a1, amount=50))
    return owner, a1, a2


def test_every_query(client_for, uid):
    admin = client_for(f"admin-{uid}", "admin")
    owner, a1, a2 = _setup(admin, uid)
    # read-your-writes: the shard has it at once
    assert admin.data(f'{{ account(id: "{a1}", consistent: true) {{ id ownerId balance status version currency }} }}')[
        "account"] == {"id": a1, "ownerId": owner, "balance": 550, "status": "ACTIVE", "version": 5, "currency": "EUR"}
    # the read models catch up
    eventually(lambda: (admin.data(f'{{ account(id: "{a1}") {{ balance }} }}')["account"] or {}).get("balance") == 550)
    eventually(lambda: len(admin.data(f'{{ accountActivity(accountId: "{a1}", first: 10) {{ items {{ id }} }} }}')[
        "accountActivity"]["items"]) == 4)
    eventually(lambda: admin.data(f'{{ user(id: "{owner}") {{ id }} }}')["user"])

    user = admin.data(f'''{{ user(id: "{owner}") {{ id name email bio status version
        accounts {{ id balance owner {{ id name }} }} totals {{ currency balance accounts }} }} }}''')["user"]
    assert user["name"] == f"Query {uid}" and user["status"] == "ACTIVE" and user["version"] == 1
    assert sorted(a["id"] for a in user["accounts"]) == sorted([a1, a2])
    assert all(a["owner"]["id"] == owner for a in user["accounts"])
    assert user["totals"] == [{"currency": "EUR", "balance": 550, "accounts": 2}]

    accounts = admin.data(f'{{ accounts(ownerId: "{owner}") {{ id }} }}')["accounts"]
    assert sorted(a["id"] for a in accounts) == sorted([a1, a2])

    first = admin.data(f'''{{ accountActivity(accountId: "{a1}", first: 2) {{
        items {{ id kind amount balanceAfter at correlationId }} pageInfo {{ endCursor hasNextPage }} }} }}''')[
        "accountActivity"]
    assert [i["kind"] for i in first["items"]] == ["withdrawal", "deposit"] and first["pageInfo"]["hasNextPage"]
    assert first["items"][0]["balanceAfter"] == 550 and first["items"][0]["at"] > 0
    rest = admin.data(f'''{{ accountActivity(accountId: "{a1}", first: 10, after: "{first['pageInfo']['endCursor']}") {{
        items {{ amount }} pageInfo {{ hasNextPage }} }} }}''')["accountActivity"]
    assert [i["amount"] for i in rest["items"]] == [200, 100] and not rest["pageInfo"]["hasNextPage"]

    found = admin.data(f'{{ users(filter: {{prefix: "Query {uid}"}}, first: 5) {{ items {{ id }} }} }}')["users"]
    assert [u["id"] for u in found["items"]] == [owner]
    found = admin.data(f'{{ searchUsers(text: "ery {uid.upper()}", first: 5) {{ items {{ id email }} }} }}')[
        "searchUsers"]
    assert [u["id"] for u in found["items"]] == [owner]

    projections = admin.data("{ projections { name version lag deadLetters status } }")["projections"]
    assert {"user_directory", "account_balances", "account_activity"} <= {p["name"] for p in projections}

    me = admin.data("{ me { subject role requestId } }")["me"]
    assert me["subject"] == f"admin-{uid}" and me["role"] == "ADMIN" and me["requestId"]


def test_page_size_is_bounded(client_for, uid):
    admin = client_for(f"admin-{uid}", "admin")
    body = admin.run("{ users(first: 1000) { items { id } } }")
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION"
