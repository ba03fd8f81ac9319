"""A short schemathesis GraphQL fuzz: queries and mutations generated from the introspected
schema, sent over HTTP. No answer may be a 5xx, and the app must keep serving.

Twice: with a customer token against the Serve app of the e2e tests, and anonymously against
the same ingress app under plain uvicorn (``python -m eventray.serving.plain``) with anonymous
reads on, the dev default (the e2e Serve app refuses anonymous callers outright, so fuzzing it
anonymously would only ever meet its 401).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from _gql import token

# the app's custom scalars: Money is integer minor units (also sent as a string), JSON any value
schemathesis.graphql.scalar("Money", st.one_of(st.integers(-2**70, 2**70).map(nodes.Int),
                                               st.text(max_size=30).map(nodes.String)))
schemathesis.graphql.scalar("JSON", st.one_of(st.integers().map(nodes.Int), st.text(max_size=30).map(nodes.String)))
schemathesis.graphql.scalar("Timestamp", st.integers(-2**63, 2**63).map(nodes.Int))
# Upload is a file of a multipart request; in a query it can only be a (refused) literal
schemathesis.graphql.scalar("Upload", st.text(max_size=30).map(nodes.String))

ME = "{ me { subject role } }"


def fuzz(url: str, headers: dict[str, str], *, examples: int) -> Counter[int]:
    """Statuses of the answers to ``examples`` generated requests per root field."""
    schema = schemathesis.graphql.from_url(url, headers=headers, timeout=30)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, "the introspected schema lost its fields"
    for operation in operations:
        if operation.path.startswith("Subscription"):
            continue  # subscriptions run over WebSockets, not this transport

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def one(case: Any) -> None:
            response = case.call(headers=headers, timeout=30)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{operation.label}: {response.status_code} {response.text[:300]} for {case.body}")

        one()
    assert not failures, failures[:5]
    return statuses


def test_fuzz_with_a_customer_token(api, uid) -> None:
    headers = {"authorization": f"Bearer {token(f'fuzz-{uid}', 'customer')}"}
    statuses = fuzz(api["url"], headers, examples=4)
    assert sum(statuses.values()) >= 40 and statuses[200] > 0, statuses
    assert not any(s >= 500 for s in statuses), statuses
    r = httpx.post(api["url"], json={"query": ME}, headers=headers, timeout=30)
    assert r.status_code in (200, 429)  # still serving (the fuzz may have used the caller's rate)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def plain_anonymous(stack_runtime, tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "EVENTRAY_ALLOW_ANONYMOUS": "true", "EVENTRAY_PROFILE": "dev"}
    # its log goes to a file: a pipe nobody reads would fill and stall the app
    log = tmp_path_factory.mktemp("plain") / "app.log"
    out = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "eventray.serving.plain", "--port", str(port)], env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the plain app did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()


def test_fuzz_anonymously(plain_anonymous) -> None:
    statuses = fuzz(plain_anonymous, {}, examples=6)
    assert sum(statuses.values()) >= 60 and statuses[200] > 0, statuses
    r = httpx.post(plain_anonymous, json={"query": ME}, timeout=30)
    assert r.status_code == 200 and r.json()["data"]["me"]["role"] == "ANONYMOUS"
