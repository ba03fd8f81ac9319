"""Every mutation over HTTP through Serve: success payloads and each typed error."""

from __future__ import annotations

import asyncio

import httpx

from _gql import RESULT, ok, send


def test_user_lifecycle(client_for, uid):
    admin = client_for(f"admin-{uid}", "admin")
    user = f"u-{uid}"
    r = ok(send(admin, "registerUser", userId=user, name=" Ann ", email="Ann@Example.com", commandId=f"c1-{uid}"))
    assert r["version"] == 1 and r["duplicate"] is False
    assert r["events"] == [{"type": "UserRegistered", "version": 1,
                            "data": {"type": "UserRegistered", "name": "Ann", "email": "ann@example.com"}}]
    again = ok(send(admin, "registerUser", userId=user, name="Ann", email="ann@example.com", commandId=f"c1-{uid}"))
    assert again["duplicate"] is True and again["version"] == 1
    ok(send(admin, "updateProfile", userId=user, name="Ann B", bio="hi", expectedVersion=1))
    conflict = send(admin, "changeEmail", userId=user, email="ann@b.example", expectedVersion=1)
    assert conflict["__typename"] == "ConflictError" and conflict["code"] == "CONFLICT"
    assert ok(send(admin, "changeEmail", userId=user, email="ann@b.example", expectedVersion=2))["version"] == 3
    exists = send(admin, "registerUser", userId=user, name="X", email="x@example.com")
    assert exists["__typename"] == "ConflictError" and exists["code"] == "ALREADY_EXISTS"
    ok(send(admin, "deactivateUser", userId=user, reason="left"))
    rule = send(admin, "updateProfile", userId=user, name="Z")
    assert rule["__typename"] == "RuleViolationError" and rule["rule"] == "UserDeactivatedError"


def test_account_lifecycle_and_rule_violations(client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    owner, acct = f"o-{uid}", f"a-{uid}"
    ok(send(teller, "registerUser", userId=owner, name="Owner", email=f"{uid}@example.com"))
    ok(send(teller, "openAccount", accountId=acct, ownerId=owner, currency="EUR"))
    assert ok(send(teller, "deposit", accountId=acct, amount=1000))["events"][0]["data"]["balance_after"] == 1000
    short = send(teller, "withdraw", accountId=acct, amount=5000)
    assert short["__typename"] == "RuleViolationError" and short["code"] == "INSUFFICIENT_FUNDS"
    ok(send(teller, "freezeAccount", accountId=acct, reason="check"))
    frozen = send(teller, "withdraw", accountId=acct, amount=1)
    assert frozen["__typename"] == "RuleViolationError" and frozen["rule"] == "AccountFrozenError"
    ok(send(teller, "unfreezeAccount", accountId=acct))
    ok(send(teller, "withdraw", accountId=acct, amount="1000"))  # Money also takes a string
    assert ok(send(teller, "closeAccount", accountId=acct))["events"][0]["type"] == "AccountClosed"
    missing = send(teller, "deposit", accountId=f"nope-{uid}", amount=1)
    assert missing["__typename"] == "NotFoundError"
    # tellers may not deactivate users
    denied = send(teller, "deactivateUser", userId=owner, reason="x")
    assert denied["__typename"] == "ForbiddenError"


def test_invalid_input_gets_typed_validation_errors(client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    bad_email = send(teller, "registerUser", userId=f"v-{uid}", name="V", email="not-an-email")
    assert bad_email["__typename"] == "ValidationError" and bad_email["field"] == "email"
    bad_id = send(teller, "registerUser", userId="has spaces!", name="V", email="v@example.com")
    assert bad_id["__typename"] == "ValidationError" and bad_id["field"] == "userId"
    ok(send(teller, "registerUser", userId=f"v-{uid}", name="V", email="v@example.com"))
    ok(send(teller, "openAccount", accountId=f"va-{uid}", ownerId=f"v-{uid}", currency="EUR"))
    negative = send(teller, "deposit", accountId=f"va-{uid}", amount=-5)
    assert negative["__typename"] == "ValidationError" and negative["field"] == "amount"
    currency = send(teller, "openAccount", accountId=f"vb-{uid}", ownerId=f"v-{uid}", currency="eur")
    assert currency["__typename"] == "ValidationError"
    # a value that is not a Money at all is refused before execution, with a typed code
    body = teller.run("mutation { deposit(input: {accountId: \"x\", amount: \"12abc\"}) { __typename } }")
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION"
    body = teller.run("mutation { deposit(input: {accountId: \"x\"}) { __typename } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_submit_commands_batch(client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    owner, acct = f"b-{uid}", f"ba-{uid}"
    query = f"mutation($c: [CommandInput!]!) {{ submitCommands(commands: $c) {{ {RESULT} }} }}"
    results = teller.data(query, {"c": [
        {"registerUser": {"userId": owner, "name": "Bulk", "email": f"bulk{uid}@example.com"}},
        {"openAccount": {"accountId": acct, "ownerId": owner, "currency": "USD"}},
        {"deposit": {"accountId": acct, "amount": 70}},
        {"deposit": {"accountId": acct, "amount": 0}},
        {"withdraw": {"accountId": acct, "amount": 100}},
    ]})["submitCommands"]
    assert [r["__typename"] for r in results] == [
        "CommandSuccess", "CommandSuccess", "CommandSuccess", "ValidationError", "RuleViolationError"]
    assert results[2]["version"] == 2


def test_concurrent_deposits_and_withdrawals_are_all_applied(api, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    owner, acct = f"c-{uid}", f"ca-{uid}"
    ok(send(teller, "registerUser", userId=owner, name="Conc", email=f"c{uid}@example.com"))
    ok(send(teller, "openAccount", accountId=acct, ownerId=owner, currency="EUR"))
    ok(send(teller, "deposit", accountId=acct, amount=10_000))

    queries = {name: f"mutation($i: {name.title()}Input!) {{ r: {name}(input: $i) {{ __typename }} }}"
               for name in ("deposit", "withdraw")}

    async def burst() -> list[dict]:
        async with httpx.AsyncClient(timeout=30, headers=teller.headers) as http:
            async def one(i: int) -> dict:
                r = await http.post(api["url"], json={"query": queries["deposit" if i % 2 else "withdraw"],
                                                      "variables": {"i": {"accountId": acct, "amount": 10}}})
                return r.json()["data"]["r"]
            return await asyncio.gather(*(one(i) for i in range(40)))

    results = asyncio.run(burst())
    assert all(r["__typename"] == "CommandSuccess" for r in results)
    account = teller.data(f'{{ account(id: "{acct}", consistent: true) {{ balance version }} }}')["account"]
    assert account == {"balance": 10_000, "version": 42}


def test_support_messages_are_sent_by_their_user_and_read_by_their_user_or_staff(client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    user, other = f"s-{uid}", f"s2-{uid}"
    ok(send(teller, "registerUser", userId=user, name="Sam", email=f"s.{uid}@example.com"))
    ok(send(teller, "registerUser", userId=other, name="Tom", email=f"t.{uid}@example.com"))
    customer = client_for(user, "customer")
    sent = ok(send(customer, "sendSupportMessage", userId=user, body="  My card is blocked.\nPlease help. "))
    assert sent["version"] == 2
    assert sent["events"] == [{"type": "SupportMessageSent", "version": 2,
                               "data": {"type": "SupportMessageSent", "body": "My card is blocked.\nPlease help."}}]
    assert send(customer, "sendSupportMessage", userId=other, body="hello there")["__typename"] == "ForbiddenError"
    wordless = send(customer, "sendSupportMessage", userId=user, body="?! 42")
    assert wordless["__typename"] == "ValidationError" and wordless["field"] == "body"
    assert wordless["code"] == "INVALID_SUPPORT_MESSAGE"
    long = send(customer, "sendSupportMessage", userId=user, body="help " * 401)
    assert long["__typename"] == "ValidationError" and long["code"] == "INVALID_SUPPORT_MESSAGE"
    # reading: a customer only their own messages (the default), staff anyone's
    body = customer.run("query($u: ID) { supportInbox(userId: $u) { id } }", {"u": other})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN" and not body.get("data"), body
    stranger = client_for(f"nobody-{uid}", "customer")
    body = stranger.run("query($u: ID) { supportInbox(userId: $u) { id } }", {"u": user})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body


def test_identity_documents_are_submitted_by_their_user_and_bad_ones_get_typed_errors(client_for, uid):
    import base64

    teller = client_for(f"teller-{uid}", "teller")
    user, other = f"k-{uid}", f"k2-{uid}"
    ok(send(teller, "registerUser", userId=user, name="Kim", email=f"k.{uid}@example.com"))
    ok(send(teller, "registerUser", userId=other, name="Lee", email=f"l.{uid}@example.com"))
    customer = client_for(user, "customer")
    document = base64.b64encode(b"\x89PNG not really").decode()
    assert send(customer, "submitIdentityDocument", userId=other, imageBase64=document)["__typename"] == \
        "ForbiddenError"
    bad = send(customer, "submitIdentityDocument", userId=user, imageBase64="not base64!")
    assert (bad["__typename"], bad["code"], bad["field"]) == ("ValidationError", "INVALID_IDENTITY_DOCUMENT",
                                                              "imageBase64")
    big = send(customer, "submitIdentityDocument", userId=user,
               imageBase64=base64.b64encode(b"x" * (256 * 1024 + 1)).decode())
    assert (big["__typename"], big["code"]) == ("ValidationError", "IDENTITY_DOCUMENT_TOO_LARGE")
    sent = ok(send(customer, "submitIdentityDocument", userId=user, imageBase64=document))
    event = sent["events"][0]
    assert event["type"] == "IdentityDocumentSubmitted" and event["data"]["submission"] == 1
    assert event["data"]["name"] == "Kim" and event["data"]["image"] == document
    pending = send(customer, "submitIdentityDocument", userId=user, imageBase64=document)
    assert (pending["__typename"], pending["code"]) == ("RuleViolationError", "VERIFICATION_PENDING")
