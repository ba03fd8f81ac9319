"""The GraphQL attack list refused before any resolver runs, on a small schema with no services.

The same handler, rules and middleware run in the deployed app (tests/e2e/test_security.py
sends the attacks to it over HTTP); here each refusal is checked together with the fact that
no resolver ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from ariadne import MutationType, QueryType, make_executable_schema
from ariadne.asgi import GraphQL

from eventray.serving.api.document_cache import DocumentCache
from eventray.serving.api.errors import format_error
from eventray.serving.api.http import HardenedHTTPHandler
from eventray.serving.api.http_cache import ReadModelCache
from eventray.serving.api.limits import query_limits
from eventray.serving.middleware.body_limit import BodyLimitMiddleware
from eventray.serving.settings import ServingSettings

SDL = """
directive @cost(weight: Int!, consistent: Int) on FIELD_DEFINITION
directive @reads(projections: [String!]!) on FIELD_DEFINITION
type Query {
  me: String @reads(projections: [])
  account(id: ID!, consistent: Boolean = false): Account @cost(weight: 2, consistent: 20) @reads(projections: ["balances"])
  slow: String @reads(projections: [])
  unlisted: String
}
type Account { id: ID! balance: Int! }
type Mutation { deposit(id: ID!): Int @cost(weight: 10) }
"""


class Harness:
    """A toy app under the hardened handler, counting resolver calls."""

    def __init__(self, **settings: Any) -> None:
        self.calls: list[str] = []
        self.position = 7
        query, mutation = QueryType(), MutationType()

        @query.field("me")
        def me(*_: Any) -> str:
            self.calls.append("me")
            return "alice"

        @query.field("account")
        def account(_: Any, __: Any, id: str, consistent: bool = False) -> dict[str, Any]:
            self.calls.append(f"account:{id}:{consistent}")
            return {"id": id, "balance": self.position}

        @query.field("slow")
        async def slow(*_: Any) -> str:
            await asyncio.sleep(5)
            return "late"

        @query.field("unlisted")
        def unlisted(*_: Any) -> str:
            self.calls.append("unlisted")
            return "x"

        @mutation.field("deposit")
        def deposit(*_: Any) -> int:
            self.calls.append("deposit")
            return 1

        schema = make_executable_schema(SDL, query, mutation)
        serving = ServingSettings(profile="dev", **settings)
        docs = DocumentCache(hide_suggestions=not serving.suggestions_on)

        async def positions(names: list[str]) -> list[tuple[str, int, int]]:
            return [(n, 1, self.position) for n in names]

        self.cache = ReadModelCache(schema, positions)
        graphql = GraphQL(schema, query_parser=docs.parse, query_validator=docs.validate, error_formatter=format_error,
                          validation_rules=[query_limits(serving.query_limits)], execute_get_queries=True,
                          introspection=serving.introspection_on,
                          http_handler=HardenedHTTPHandler(serving, parse=docs.parse, cache=self.cache))
        self.app = BodyLimitMiddleware(graphql, max_bytes=serving.max_body_bytes)

    def request(self, method: str, *, json_body: Any = None, content: bytes | None = None,
                params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, "/", json=json_body, content=content, params=params,
                                       headers=headers)

        return asyncio.run(go())

    def post(self, query: str, **extra: Any) -> httpx.Response:
        return self.request("POST", json_body={"query": query, **extra})


def code(r: httpx.Response) -> str:
    """The first error's code that is not a plain validation failure."""
    codes = [e["extensions"]["code"] for e in r.json()["errors"]]
    return next((c for c in codes if c != "GRAPHQL_VALIDATION_FAILED"), codes[0])


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_a_plain_query_runs(h: Harness) -> None:
    r = h.post("{ me }")
    assert r.status_code == 200 and r.json() == {"data": {"me": "alice"}} and h.calls == ["me"]


def test_a_body_over_the_limit_gets_413_before_the_app_reads_it() -> None:
    h = Harness(max_body_bytes=4096)
    big = json.dumps({"query": "{ me }", "variables": {"pad": "x" * 10_000}}).encode()
    r = h.request("POST", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and code(r) == "PAYLOAD_TOO_LARGE" and h.calls == []

    async def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"x" * 1000

    async def chunked() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="http://t") as c:
            return await c.post("/", content=chunks(), headers={"content-type": "application/json"})

    r = asyncio.run(chunked())
    assert r.status_code == 413 and h.calls == []


def test_too_many_aliases_are_refused_before_any_resolver(h: Harness) -> None:
    r = h.post("{ " + " ".join(f"m{i}: me" for i in range(500)) + " }")
    assert r.status_code == 400 and code(r) == "TOO_MANY_ALIASES"
    assert h.calls == []


def test_aliases_in_a_fragment_count_each_time_it_is_spread(h: Harness) -> None:
    frag = "fragment F on Query { " + " ".join(f"a{i}: me" for i in range(10)) + " }"
    assert h.post("{ ...F } " + frag).status_code == 200
    r = h.post("{ ...F ... on Query { ...F ...F ...F } } " + frag)
    assert code(r) == "TOO_MANY_ALIASES" and len(h.calls) == 10


def test_consistent_reads_cost_more_and_an_amplified_request_is_refused() -> None:
    h = Harness(max_aliases=1000, max_query_cost=5000)
    cheap = "{ " + " ".join(f'a{i}: account(id: "{i}") {{ balance }}' for i in range(300)) + " }"
    assert h.post(cheap).status_code == 200 and len(h.calls) == 300
    h.calls.clear()
    costly = cheap.replace(")", ", consistent: true)")
    r = h.post(costly)
    assert r.status_code == 400 and code(r) == "QUERY_TOO_COSTLY" and h.calls == []
    assert r.json()["errors"][0]["extensions"]["cost"] == 300 * (20 + 1)
    # a variable may be true: the worst case counts
    r = h.post("query($c: Boolean) { " + " ".join(f'a{i}: account(id: "{i}", consistent: $c) {{ balance }}'
                                               for i in range(300)) + " }")
    assert code(r) == "QUERY_TOO_COSTLY" and h.calls == []


def test_operations_and_variables_are_capped(h: Harness) -> None:
    doc = " ".join(f"query Q{i} {{ me }}" for i in range(6))
    assert code(h.post(doc, operationName="Q0")) == "TOO_MANY_OPERATIONS" and h.calls == []
    decl = ", ".join(f"$v{i}: Int" for i in range(51))
    assert code(h.post(f"query({decl}) {{ me }}")) == "TOO_MANY_VARIABLES"
    r = h.post("{ me }", variables={f"v{i}": i for i in range(51)})
    assert r.status_code == 400 and code(r) == "TOO_MANY_VARIABLES" and h.calls == []


def test_a_mutation_over_get_is_405_and_never_runs(h: Harness) -> None:
    for query in ('mutation { deposit(id: "a") }', 'query A { me } mutation B { deposit(id: "a") }'):
        r = h.request("GET", params={"query": query})
        assert r.status_code == 405 and r.headers["allow"] == "POST" and code(r) == "METHOD_NOT_ALLOWED"
        assert "never run over GET" in r.json()["errors"][0]["message"]
    assert h.calls == []
    assert h.request("GET", params={"query": "{ me }"}).json() == {"data": {"me": "alice"}}


def test_a_form_post_is_refused_and_multipart_needs_a_preflight_header(h: Harness) -> None:
    r = h.request("POST", content=b"query=%7B+me+%7D", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and code(r) == "UNSUPPORTED_MEDIA_TYPE"
    r = h.request("POST", content=b'{"query": "{ me }"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415
    files = {"operations": (None, json.dumps({"query": "{ me }"})), "map": (None, "{}")}

    async def multipart(headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="http://t") as c:
            return await c.post("/", files=files, headers=headers)

    r = asyncio.run(multipart({}))
    assert r.status_code == 400 and code(r) == "CSRF_REFUSED" and h.calls == []
    r = asyncio.run(multipart({"GraphQL-Require-Preflight": "1"}))
    assert r.status_code == 200 and r.json() == {"data": {"me": "alice"}}


def test_suggestions_and_introspection_are_off_in_production_like_settings() -> None:
    dev = Harness()
    assert "Did you mean" in dev.post("{ mee }").json()["errors"][0]["message"]
    quiet = Harness(graphql_suggestions=False, introspection=False)
    r = quiet.post("{ mee }")
    assert "Did you mean" not in r.json()["errors"][0]["message"] and "mee" in r.json()["errors"][0]["message"]
    r = quiet.post("{ __schema { types { name } } }")
    assert r.status_code == 400 and "introspection" in r.json()["errors"][0]["message"].lower()
    assert dev.post("{ __schema { queryType { name } } }").status_code == 200


def test_a_request_past_the_time_limit_is_stopped_with_504() -> None:
    h = Harness(request_timeout_s=0.2)
    r = h.post("{ slow }")
    assert r.status_code == 504 and code(r) == "TIMEOUT" and "same commandId" in r.json()["errors"][0]["message"]


def test_per_operation_rate_limit_beside_the_subjects() -> None:
    h = Harness(operation_rate_limits={"account": 1.0})
    statuses = [h.post('{ account(id: "a") { balance } }').status_code for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]  # a burst of two seconds' worth
    r = h.post('{ account(id: "a") { balance } }')
    assert code(r) == "RATE_LIMITED" and int(r.headers["retry-after"]) >= 1
    assert h.post("{ me }").status_code == 200  # other fields are not limited


def _apq(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}}


def test_automatic_persisted_queries(h: Harness) -> None:
    q = "{ me }"
    r = h.request("GET", params={"extensions": json.dumps(_apq(q))})
    assert code(r) == "PERSISTED_QUERY_NOT_FOUND"
    assert h.post(q, extensions=_apq(q)).json() == {"data": {"me": "alice"}}
    r = h.request("GET", params={"extensions": json.dumps(_apq(q))})
    assert r.json() == {"data": {"me": "alice"}}
    assert code(h.post("{ unlisted }", extensions=_apq(q))) == "PERSISTED_QUERY_HASH_MISMATCH"


def test_only_known_persisted_queries_in_an_allow_list(tmp_path: Path) -> None:
    known = "{ me }"
    path = tmp_path / "pq.json"
    path.write_text(json.dumps({hashlib.sha256(known.encode()).hexdigest(): known}))
    h = Harness(persisted_queries_file=path, persisted_queries_only=True)
    assert code(h.post("{ me }")) == "PERSISTED_QUERY_REQUIRED"
    assert code(h.post("{ unlisted }", extensions=_apq("{ unlisted }"))) == "PERSISTED_QUERY_NOT_ALLOWED"
    r = h.request("GET", params={"extensions": json.dumps(_apq(known))})
    assert r.json() == {"data": {"me": "alice"}} and "unlisted" not in h.calls


def test_etag_304_until_the_projection_moves(h: Harness) -> None:
    params = {"query": '{ account(id: "a") { balance } }'}
    first = h.request("GET", params=params)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('W/"')
    assert first.headers["cache-control"] == "private, no-cache" and first.headers["vary"] == "Authorization"
    h.calls.clear()
    again = h.request("GET", params=params, headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and h.calls == []  # no resolver ran
    h.position += 1  # the projection applied an event
    moved = h.request("GET", params=params, headers={"if-none-match": etag})
    assert moved.status_code == 200 and moved.headers["etag"] != etag and moved.json()["data"]["account"]["balance"] == 8


def test_consistent_reads_and_unlisted_fields_get_no_etag(h: Harness) -> None:
    assert "etag" not in h.request("GET", params={"query": '{ account(id: "a", consistent: true) { balance } }'}).headers
    assert "etag" not in h.request("GET", params={"query": "{ unlisted }"}).headers
    assert "etag" not in h.post('{ account(id: "a") { balance } }').headers  # a plain POST is not cached
    assert "etag" in h.post('{ account(id: "a") { balance } }', extensions=_apq('{ account(id: "a") { balance } }')).headers


def test_a_batch_of_operations_is_refused_and_none_of_them_runs(h: Harness) -> None:
    r = h.request("POST", json_body=[{"query": "{ me }"}, {"query": "{ me }"}])
    assert r.status_code == 400 and "errors" in r.json() and h.calls == []


def test_circular_fragments_are_refused_before_any_resolver(h: Harness) -> None:
    r = h.post("{ ...A } fragment A on Query { me ...B } fragment B on Query { me ...A }")
    assert r.status_code == 400 and h.calls == []
    assert any("Cannot spread fragment" in e["message"] for e in r.json()["errors"]), r.json()
