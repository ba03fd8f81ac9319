"""Ariadne's HTTP handler with the request-level defences of the OWASP GraphQL cheat sheet.

Before a query runs:

- **CSRF.** A POST must be ``application/json``, or ``multipart/form-data`` with a header
  no HTML form can send (``GraphQL-Require-Preflight``, ``Apollo-Require-Preflight`` or
  ``X-Eventray-CSRF``); anything else is a 415. A mutation or subscription over GET is a
  405 with ``Allow: POST``, never run.
- **Persisted queries** (the automatic persisted query protocol:
  ``extensions.persistedQuery.sha256Hash``). Known hashes come from a file; with
  ``persisted_queries_only`` only those are accepted, by hash.
- **Variables** per request are capped.
- **Per-operation rate limits**: root fields named in ``operation_rate_limits`` draw from a
  bucket of their own per subject, beside the per-subject limit of the middleware.
- **A time limit** per request (``request_timeout_s``): past it the request is stopped and
  answered 504 ``TIMEOUT``.
- **Cached answers**: a query over read models sent by GET or as a persisted query gets an
  ETag (:mod:`.http_cache`); ``If-None-Match`` gets a 304 without running the resolvers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ariadne.asgi.handlers import GraphQLHTTPHandler
from ariadne.exceptions import HttpError
from graphql import DocumentNode, FieldNode, GraphQLError, OperationDefinitionNode, OperationType
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from eventray.serving.middleware._asgi import PRINCIPAL
from eventray.serving.middleware.ratelimit import TokenBuckets
from eventray.serving.settings import ServingSettings

log = logging.getLogger("eventray.serving.http")

#: request headers an HTML form cannot set, so a request carrying one was preflighted by CORS
PREFLIGHT_HEADERS = ("graphql-require-preflight", "apollo-require-preflight", "x-eventray-csrf")
_APQ_MAX = 2048


def refusal(status: int, message: str, code: str, headers: dict[str, str] | None = None,
            **extensions: Any) -> JSONResponse:
    """A GraphQL-shaped error answer with ``status``."""
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code, **extensions}}]},
                        status_code=status, headers=headers)


def load_persisted(path: Path | None) -> dict[str, str]:
    """The persisted queries of ``path`` (a JSON object sha256 hex -> query), checked."""
    if path is None:
        return {}
    from eventray.platform.errors import ConfigurationError

    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"EVENTRAY_PERSISTED_QUERIES_FILE={path}: cannot read it as JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigurationError(f"EVENTRAY_PERSISTED_QUERIES_FILE={path}: expected an object sha256 -> query")
    for digest, query in raw.items():
        if not isinstance(query, str) or hashlib.sha256(query.encode()).hexdigest() != digest:
            raise ConfigurationError(
                f"EVENTRAY_PERSISTED_QUERIES_FILE={path}: the entry {digest[:16]}... is not the sha256 of its query")
    return dict(raw)


def chosen_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    """The operation a request runs: the one named ``name``, else the only one; None when unclear."""
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in ops if o.name is not None and o.name.value == name), None)
    return ops[0] if len(ops) == 1 else None


class HardenedHTTPHandler(GraphQLHTTPHandler):
    """``GraphQLHTTPHandler`` refusing what :mod:`this module <.http>` lists, before execution.

    Args:
        serving: the limits and switches.
        parse: the replica's cached parser (``DocumentCache.parse``).
        cache: the ETag cache of read-model queries, or None.
    """

    def __init__(self, serving: ServingSettings, *, parse: Any, cache: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._serving = serving
        self._parse = parse
        self._cache = cache
        self._timeout_s = serving.request_timeout_s
        self._persisted = load_persisted(serving.persisted_queries_file)
        self._known = frozenset(self._persisted)
        self._only_persisted = serving.only_persisted_queries
        self._apq: OrderedDict[str, str] = OrderedDict()
        self._op_buckets = {field: TokenBuckets(rate=rate, burst=max(1, math.ceil(rate * 2)))
                            for field, rate in serving.operation_rate_limits.items()}

    async def handle_request_override(self, request: Request) -> Response | None:
        if request.method == "POST":
            refused = self._csrf(request)
            if refused is not None:
                return refused
        elif request.method == "GET":
            if not (request.query_params.get("query") or request.query_params.get("extensions")):
                return None  # the explorer, or Ariadne's 405
        else:
            return None
        try:
            data = await (self._get_data(request) if request.method == "GET" else self.extract_data_from_request(request))
        except HttpError as e:
            return refusal(400, e.message or "bad request", "BAD_REQUEST")
        if not isinstance(data, dict):
            return None  # Ariadne answers a batch array or other shapes with its 400
        persisted, refused = self._resolve_persisted(data)
        if refused is not None:
            return refused
        variables = data.get("variables")
        if isinstance(variables, dict) and len(variables) > self._serving.max_variables:
            return refusal(400, f"the request carries {len(variables)} variables; at most "
                           f"{self._serving.max_variables} are accepted", "TOO_MANY_VARIABLES")
        document, operation = self._operation(data)
        if request.method == "GET":
            refused = self._get_refusal(data, operation)
            if refused is not None:
                return refused
        refused = self._rate_limited(request, operation)
        if refused is not None:
            return refused
        if self._cache is not None and operation is not None and (request.method == "GET" or persisted):
            return await self._cache.answer(request, data, operation, lambda: self.execute_graphql_query(request, data),
                                            document, self._respond)
        success, result = await self.execute_graphql_query(request, data)
        return self._respond(success, result, None)

    @staticmethod
    def _respond(success: bool, result: dict[str, Any], headers: dict[str, str] | None) -> Response:
        timed_out = any((e.get("extensions") or {}).get("code") == "TIMEOUT" for e in result.get("errors") or ())
        return JSONResponse(result, status_code=504 if timed_out else 200 if success else 400, headers=headers)

    async def execute_graphql_query(self, request: Any, data: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):  # no task of its own, unlike wait_for
                return await super().execute_graphql_query(request, data, **kwargs)
        except TimeoutError:
            log.warning("a GraphQL request ran past %.1f s and was stopped", self._timeout_s)
            return False, {"errors": [{
                "message": f"the request took longer than {self._timeout_s:g} s and was stopped; a command it "
                           "carried may still be applied: send it again with the same commandId",
                "extensions": {"code": "TIMEOUT", "limitSeconds": self._timeout_s}}]}

    # --- the checks ------------------------------------------------------------------------------

    @staticmethod
    def _csrf(request: Request) -> Response | None:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            return None
        preflighted = any(h in request.headers for h in PREFLIGHT_HEADERS)
        if content_type == "multipart/form-data":
            if preflighted:
                return None
            return refusal(400, "a multipart request needs the header GraphQL-Require-Preflight: 1 (an HTML form "
                           "cannot send it, so a cross-site form cannot run mutations)", "CSRF_REFUSED")
        return refusal(415, f"Content-Type {content_type or '(none)'} is not accepted: send application/json "
                       "(or multipart/form-data with GraphQL-Require-Preflight for uploads)",
                       "UNSUPPORTED_MEDIA_TYPE")

    @staticmethod
    async def _get_data(request: Request) -> dict[str, Any]:
        params = request.query_params
        data: dict[str, Any] = {"query": params.get("query") or None,
                                "operationName": params.get("operationName") or None}
        for key in ("variables", "extensions"):
            raw = params.get(key)
            if raw:
                try:
                    data[key] = json.loads(raw)
                except ValueError as e:
                    raise HttpError(f"the {key} query parameter is not valid JSON") from e
        return data

    def _resolve_persisted(self, data: dict[str, Any]) -> tuple[bool, Response | None]:
        """Fills ``data["query"]`` from a persisted-query hash; (whether it was persisted, a refusal)."""
        ext = data.get("extensions")
        pq = ext.get("persistedQuery") if isinstance(ext, dict) else None
        if not isinstance(pq, dict):
            if self._only_persisted:
                return False, refusal(400, "this API accepts only persisted queries: send "
                                      "extensions.persistedQuery.sha256Hash of a known query", "PERSISTED_QUERY_REQUIRED")
            return False, None
        digest = pq.get("sha256Hash")
        if pq.get("version") != 1 or not isinstance(digest, str):
            return False, refusal(400, "persistedQuery needs version 1 and a sha256Hash", "PERSISTED_QUERY_INVALID")
        query = data.get("query")
        if isinstance(query, str) and query:
            if hashlib.sha256(query.encode()).hexdigest() != digest:
                return False, refusal(400, "sha256Hash is not the hash of the query sent", "PERSISTED_QUERY_HASH_MISMATCH")
            if self._only_persisted and digest not in self._known:
                return False, refusal(400, "the query is not among the persisted queries this API accepts",
                                      "PERSISTED_QUERY_NOT_ALLOWED")
            if digest not in self._persisted:
                self._apq[digest] = query
                self._apq.move_to_end(digest)
                if len(self._apq) > _APQ_MAX:
                    self._apq.popitem(last=False)
            return True, None
        known = self._persisted.get(digest) or self._apq.get(digest)
        if known is None:
            # the protocol's answer: the client sends the query with its hash once, then the hash alone
            return False, refusal(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        data["query"] = known
        return True, None

    def _operation(self, data: dict[str, Any]) -> tuple[DocumentNode | None, OperationDefinitionNode | None]:
        query = data.get("query")
        if not isinstance(query, str):
            return None, None
        try:
            document = self._parse(None, data)
        except GraphQLError:
            return None, None  # execution reports the syntax error
        name = data.get("operationName")
        return document, chosen_operation(document, name if isinstance(name, str) else None)

    def _get_refusal(self, data: dict[str, Any], operation: OperationDefinitionNode | None) -> Response | None:
        kinds = {operation.operation} if operation is not None else set()
        if operation is None and isinstance(data.get("query"), str):
            try:
                document = self._parse(None, data)
            except GraphQLError:
                return None
            kinds = {d.operation for d in document.definitions if isinstance(d, OperationDefinitionNode)}
        if kinds & {OperationType.MUTATION, OperationType.SUBSCRIPTION}:
            return refusal(405, "mutations and subscriptions are never run over GET: send a POST with "
                           "Content-Type: application/json (subscriptions: a WebSocket)", "METHOD_NOT_ALLOWED",
                           headers={"allow": "POST"})
        return None

    def _rate_limited(self, request: Request, operation: OperationDefinitionNode | None) -> Response | None:
        if not self._op_buckets or operation is None:
            return None
        principal = request.scope.get(PRINCIPAL)
        who = principal.rate_key if principal is not None and principal.subject else \
            f"addr:{(request.scope.get('client') or ('?', 0))[0]}"
        for sel in operation.selection_set.selections:
            if isinstance(sel, FieldNode) and sel.name.value in self._op_buckets:
                wait = self._op_buckets[sel.name.value].take(who)
                if wait > 0:
                    return refusal(429, f"rate limit of {sel.name.value} exceeded; retry later", "RATE_LIMITED",
                                   headers={"retry-after": str(max(1, math.ceil(wait)))}, field=sel.name.value)
        return None
