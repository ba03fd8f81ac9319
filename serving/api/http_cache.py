"""HTTP caching of read-model queries, the event-sourced way: valid while no projection moved.

A read model changes only when its projection applies events, and then its stored offsets
move (in the same transaction as the rows). So the answer to a query over read models is
fully named by the query, its variables, the caller, and the positions (current version and
stored offsets) of the projections its fields read. That is the ETag; a request whose
``If-None-Match`` carries it gets a 304 and no resolver runs.

Fields say what they read with the platform's directive
``@reads(projections: ["account_balances"])``. A query is cacheable only when every root
field says so (and nested fields that read more say so too); consistent reads (a true
``consistent`` argument), mutations and subscriptions are never cached. Answers are
``Cache-Control: private, no-cache`` with ``Vary: Authorization``: they depend on the caller,
and a client must revalidate before each use, which is what makes the ETag safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import (
    BooleanValueNode, FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLSchema, InlineFragmentNode,
    ListValueNode, OperationDefinitionNode, OperationType, SelectionSetNode, StringValueNode, VariableNode, get_named_type,
)
from starlette.requests import Request
from starlette.responses import Response

from eventray.serving.api.directives import field_directives
from eventray.serving.middleware._asgi import PRINCIPAL

log = logging.getLogger("eventray.serving.cache")

READS_DIRECTIVE = "reads"
_POSITIONS = """
SELECT p.name, p.current_version, coalesce(sum(o.next_offset), 0)::bigint
  FROM eventray_projections p
  LEFT JOIN eventray_projection_offsets o ON o.name = p.name AND o.version = p.current_version
 WHERE p.name = ANY(%s)
 GROUP BY p.name, p.current_version
"""

Positions = Callable[[list[str]], Awaitable[list[tuple[str, int, int]]]]


def _reads_of(schema: GraphQLSchema) -> dict[tuple[str, str], tuple[str, ...]]:
    reads: dict[tuple[str, str], tuple[str, ...]] = {}
    for type_name, name, d in field_directives(schema, READS_DIRECTIVE):
        for arg in d.arguments or ():
            if arg.name.value == "projections" and isinstance(arg.value, ListValueNode):
                reads[(type_name, name)] = tuple(v.value for v in arg.value.values if isinstance(v, StringValueNode))
    return reads


async def pool_positions(pool: Any, names: list[str]) -> list[tuple[str, int, int]]:
    """``(name, current version, sum of stored offsets)`` of the projections ``names``."""
    async with pool.connection() as conn:
        cur = await conn.execute(_POSITIONS, (names,))
        return [(str(n), int(v), int(o)) for n, v, o in await cur.fetchall()]


class ReadModelCache:
    """ETags and 304s for the cacheable queries of one schema.

    Args:
        schema: the executable schema (its ``@reads`` directives are read once).
        positions: the projections' positions now (``pool_positions`` over the read pool).
    """

    def __init__(self, schema: GraphQLSchema, positions: Positions) -> None:
        self._schema = schema
        self._reads = _reads_of(schema)
        self._positions = positions
        self.hits = 0

    def projections_of(self, document_fragments: dict[str, FragmentDefinitionNode],
                       operation: OperationDefinitionNode, variables: dict[str, Any]) -> tuple[str, ...] | None:
        """The projections the operation reads, or None when it may not be cached."""
        if operation.operation is not OperationType.QUERY:
            return None
        root = self._schema.query_type
        found: set[str] = set()
        ok = self._walk(operation.selection_set, root, document_fragments, variables, found, root=True,
                        seen=frozenset())
        return tuple(sorted(found)) if ok else None

    def _walk(self, selection_set: SelectionSetNode | None, parent: Any,
              fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any], found: set[str], *,
              root: bool, seen: frozenset[str]) -> bool:
        if selection_set is None or parent is None:
            return True
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                name = sel.name.value
                if name == "__typename":
                    continue
                if name.startswith("__"):
                    return False
                key = (parent.name, name)
                if key in self._reads:
                    found.update(self._reads[key])
                elif root:
                    return False
                for arg in sel.arguments or ():
                    if arg.name.value == "consistent":
                        value = arg.value
                        if (isinstance(value, BooleanValueNode) and value.value) or (
                                isinstance(value, VariableNode) and variables.get(value.name.value)):
                            return False
                fields = getattr(parent, "fields", None) or {}
                child = get_named_type(fields[name].type) if name in fields else None
                if not self._walk(sel.selection_set, child, fragments, variables, found, root=False, seen=seen):
                    return False
            elif isinstance(sel, InlineFragmentNode):
                on = self._schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                if not self._walk(sel.selection_set, on, fragments, variables, found, root=root, seen=seen):
                    return False
            elif isinstance(sel, FragmentSpreadNode):
                frag = fragments.get(sel.name.value)
                if frag is None or sel.name.value in seen:
                    return False
                on = self._schema.get_type(frag.type_condition.name.value)
                if not self._walk(frag.selection_set, on, fragments, variables, found, root=root,
                                  seen=seen | {sel.name.value}):
                    return False
        return True

    async def answer(self, request: Request, data: dict[str, Any], operation: OperationDefinitionNode,
                     execute: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]], document: Any,
                     respond: Callable[[bool, dict[str, Any], dict[str, str] | None], Response]) -> Response:
        """The response to a GET or persisted query: a 304, or the executed answer (with its ETag when
        the query is cacheable and succeeded). ``respond(success, result, headers)`` makes the answer."""
        variables = data.get("variables") if isinstance(data.get("variables"), dict) else {}
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        projections = self.projections_of(fragments, operation, variables or {})
        if projections is None:
            return respond(*await execute(), None)
        try:
            positions = await self._positions(list(projections)) if projections else []
        except Exception as e:  # noqa: BLE001 - no ETag when positions cannot be read; the query still runs
            log.warning("projection positions unavailable for an ETag: %s", e)
            return respond(*await execute(), None)
        principal = request.scope.get(PRINCIPAL)
        etag = 'W/"' + hashlib.sha256(json.dumps(
            [data.get("query"), data.get("operationName"), variables,
             getattr(principal, "subject", None), getattr(principal, "role", None), positions],
            sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()[:40] + '"'
        headers = {"etag": etag, "cache-control": "private, no-cache", "vary": "Authorization"}
        wanted = request.headers.get("if-none-match", "")
        if etag in {t.strip() for t in wanted.split(",")}:
            self.hits += 1
            return Response(status_code=304, headers=headers)
        success, result = await execute()
        return respond(success, result, headers if success and not result.get("errors") else None)
