"""Query depth and cost limits, as GraphQL validation rules (checked before execution).

Depth counts nested selections of one operation through fragments, ignoring introspection
(``__schema``/``__type``, which GraphiQL needs). Cost: every field costs 1; a field with a
``first`` argument multiplies its sub-selection's cost by it (a variable counts as the max
page size, since validation runs before variables are known).
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLError, InlineFragmentNode,
    IntValueNode, OperationDefinitionNode, SelectionSetNode, ValidationContext, ValidationRule,
)


def _walk(selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode],
          default_first: int, depth: int, seen: frozenset[str]) -> tuple[int, int]:
    """(max depth, cost) of a selection set."""
    if selection_set is None:
        return depth, 0
    max_depth, cost = depth, 0
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            if sel.name.value.startswith("__"):
                continue
            multiplier = 1
            for arg in sel.arguments or ():
                if arg.name.value == "first":
                    multiplier = int(arg.value.value) if isinstance(arg.value, IntValueNode) else default_first
                    multiplier = max(1, multiplier)
            d, c = _walk(sel.selection_set, fragments, default_first, depth + 1, seen)
            max_depth, cost = max(max_depth, d), cost + 1 + multiplier * c
        elif isinstance(sel, InlineFragmentNode):
            d, c = _walk(sel.selection_set, fragments, default_first, depth, seen)
            max_depth, cost = max(max_depth, d), cost + c
        elif isinstance(sel, FragmentSpreadNode):
            name = sel.name.value
            frag = fragments.get(name)
            if frag is None or name in seen:  # unknown or cyclic: other rules report it
                continue
            d, c = _walk(frag.selection_set, fragments, default_first, depth, seen | {name})
            max_depth, cost = max(max_depth, d), cost + c
    return max_depth, cost


def query_limits(*, max_depth: int, max_cost: int, default_first: int) -> type[ValidationRule]:
    """A validation rule refusing operations deeper than ``max_depth`` or costlier than ``max_cost``."""

    class QueryLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments = {
                d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            depth, cost = _walk(node.selection_set, self._fragments, default_first, 0, frozenset())
            if depth > max_depth:
                self.report_error(GraphQLError(
                    f"query depth {depth} exceeds the limit of {max_depth}", node,
                    extensions={"code": "QUERY_TOO_DEEP", "depth": depth, "limit": max_depth}))
            if cost > max_cost:
                self.report_error(GraphQLError(
                    f"query cost {cost} exceeds the limit of {max_cost}", node,
                    extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": max_cost}))

    return QueryLimits
