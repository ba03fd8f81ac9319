"""Parse and validate each distinct query text once per replica.

Clients send the same few operations over and over (with different variables); parsing and
validating them took a large share of a request's CPU here. The parser keeps an LRU of
query text -> document; the validator remembers the errors of each cached document (the
schema and the rules are fixed for the app's life). Documents are never mutated after
parsing, so sharing them between requests is safe.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse, validate


class DocumentCache:
    """An LRU of parsed documents and their validation errors.

    Args:
        max_size: distinct query texts kept.
        max_query_length: longer texts are refused before parsing.
        hide_suggestions: leave "Did you mean ...?" out of validation errors (production).
    """

    def __init__(self, *, max_size: int = 1024, max_query_length: int = 20_000,
                 hide_suggestions: bool = False) -> None:
        self._max = max_size
        self._hide_suggestions = hide_suggestions
        self._max_len = max_query_length
        self._docs: OrderedDict[str, DocumentNode] = OrderedDict()
        self._errors: dict[int, list[GraphQLError]] = {}

    def parse(self, _context: Any, data: dict[str, Any]) -> DocumentNode:
        """Ariadne ``query_parser``."""
        query = data["query"]
        doc = self._docs.get(query)
        if doc is not None:
            self._docs.move_to_end(query)
            return doc
        if len(query) > self._max_len:
            raise GraphQLError(f"the query is longer than {self._max_len} characters",
                               extensions={"code": "QUERY_TOO_LONG"})
        doc = parse(query)
        self._docs[query] = doc
        if len(self._docs) > self._max:
            _, old = self._docs.popitem(last=False)
            self._errors.pop(id(old), None)
        return doc

    def validate(self, schema: GraphQLSchema, document_ast: DocumentNode, rules: Any = None,
                 max_errors: int | None = None, type_info: Any = None) -> list[GraphQLError]:
        """Ariadne ``query_validator``: cached for documents this cache parsed."""
        key = id(document_ast)
        cached = self._errors.get(key)
        if cached is not None:
            return cached
        errors = validate(schema, document_ast, rules, max_errors, hide_suggestions=self._hide_suggestions)
        if any(doc is document_ast for doc in self._docs.values()):
            self._errors[key] = errors
        return errors
