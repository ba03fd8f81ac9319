"""Query limits, as a GraphQL validation rule: checked before any resolver runs.

One rule walks each operation once, through its fragments, and refuses it when any limit is
passed:

- **depth**: nested selections, ignoring introspection (``__schema``/``__type``, which
  GraphiQL needs);
- **cost**: every field costs 1 unless its definition says more with the platform's
  ``@cost(weight: Int!, consistent: Int)`` directive (a field that reaches a shard, the
  database or a model). ``consistent`` is the weight when the field's ``consistent`` argument
  is true, or a variable (validation runs before variables are known, so the worst case
  counts). A field with a ``first`` argument multiplies its sub-selection's cost by it (a
  variable counts as the max page size);
- **aliases**: aliased fields of one operation (a fragment counts each time it is spread), the
  amplification an alias list buys;
- **operations** in one document, and **variables** declared by one operation.

So a request of 300 aliased consistent reads is refused before the first shard call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode, DirectiveNode, FieldNode, FragmentDefinitionNode, FragmentSpreadNode,
    GraphQLError, GraphQLSchema, InlineFragmentNode, IntValueNode, OperationDefinitionNode, OperationType,
    SelectionSetNode, ValidationContext, ValidationRule, VariableNode, get_named_type,
)

from eventray.serving.api.directives import field_directives

#: the directive apps put on costly fields; declared in platform.graphql
COST_DIRECTIVE = "cost"


@dataclass(frozen=True, slots=True)
class QueryLimitSettings:
    """The limits one rule enforces (from :class:`~eventray.serving.settings.ServingSettings`)."""

    max_depth: int
    max_cost: int
    default_first: int
    max_aliases: int = 30
    max_operations: int = 5
    max_variables: int = 50


def _int_arg(directive: DirectiveNode, name: str) -> int | None:
    for arg in directive.arguments or ():
        if arg.name.value == name and isinstance(arg.value, IntValueNode):
            return int(arg.value.value)
    return None


class _Weights:
    """``@cost`` weights of the schema's fields, read once from their SDL definitions."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.plain: dict[tuple[str, str], int] = {}
        self.consistent: dict[tuple[str, str], int] = {}
        for type_name, name, d in field_directives(schema, COST_DIRECTIVE):
            weight = _int_arg(d, "weight")
            if weight is not None:
                self.plain[(type_name, name)] = max(0, weight)
            consistent = _int_arg(d, "consistent")
            if consistent is not None:
                self.consistent[(type_name, name)] = max(0, consistent)

    def of(self, parent: str | None, sel: FieldNode) -> int:
        key = (parent or "", sel.name.value)
        if key in self.consistent:
            for arg in sel.arguments or ():
                if arg.name.value == "consistent" and (
                        isinstance(arg.value, VariableNode)
                        or (isinstance(arg.value, BooleanValueNode) and arg.value.value)):
                    return self.consistent[key]
        return self.plain.get(key, 1)


_WEIGHTS: dict[int, _Weights] = {}


def _weights(schema: GraphQLSchema) -> _Weights:
    # one schema per app for the replica's life: read its directives once
    w = _WEIGHTS.get(id(schema))
    if w is None:
        w = _WEIGHTS[id(schema)] = _Weights(schema)
    return w


class _Walk:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], default_first: int):
        self.schema = schema
        self.fragments = fragments
        self.default_first = default_first
        self.weights = _weights(schema)
        #: aliased fields met, fragments counted each time they are spread
        self.aliases = 0

    def _child_type(self, parent: Any, field: str) -> Any:
        fields = getattr(parent, "fields", None)
        if not fields or field not in fields:
            return None  # an unknown field: FieldsOnCorrectTypeRule reports it
        return get_named_type(fields[field].type)

    def selections(self, selection_set: SelectionSetNode | None, parent: Any, depth: int,
                   seen: frozenset[str]) -> tuple[int, int]:
        """(max depth, cost) of a selection set on the type ``parent``."""
        if selection_set is None:
            return depth, 0
        max_depth, cost = depth, 0
        parent_name = getattr(parent, "name", None)
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                if sel.name.value.startswith("__"):
                    continue
                self.aliases += sel.alias is not None
                multiplier = 1
                for arg in sel.arguments or ():
                    if arg.name.value == "first":
                        multiplier = int(arg.value.value) if isinstance(arg.value, IntValueNode) else self.default_first
                        multiplier = max(1, multiplier)
                d, c = self.selections(sel.selection_set, self._child_type(parent, sel.name.value), depth + 1, seen)
                max_depth = max(max_depth, d)
                cost += self.weights.of(parent_name, sel) + multiplier * c
            elif isinstance(sel, InlineFragmentNode):
                on = self.schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                d, c = self.selections(sel.selection_set, on, depth, seen)
                max_depth, cost = max(max_depth, d), cost + c
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                frag = self.fragments.get(name)
                if frag is None or name in seen:  # unknown or cyclic: other rules report it
                    continue
                on = self.schema.get_type(frag.type_condition.name.value)
                d, c = self.selections(frag.selection_set, on, depth, seen | {name})
                max_depth, cost = max(max_depth, d), cost + c
        return max_depth, cost



def query_limits(limits: QueryLimitSettings) -> type[ValidationRule]:
    """A validation rule enforcing ``limits``."""
    lim = limits

    class QueryLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            definitions = context.document.definitions
            self._fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
            operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > lim.max_operations:
                self.report_error(GraphQLError(
                    f"the document has {len(operations)} operations; at most {lim.max_operations} are accepted",
                    extensions={"code": "TOO_MANY_OPERATIONS", "count": len(operations),
                                "limit": lim.max_operations}))

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            variables = len(node.variable_definitions or ())
            if variables > lim.max_variables:
                self.report_error(GraphQLError(
                    f"the operation declares {variables} variables; at most {lim.max_variables} are accepted",
                    node, extensions={"code": "TOO_MANY_VARIABLES", "count": variables,
                                      "limit": lim.max_variables}))
            schema = self.context.schema
            root = {OperationType.QUERY: schema.query_type, OperationType.MUTATION: schema.mutation_type,
                    OperationType.SUBSCRIPTION: schema.subscription_type}.get(node.operation)
            walk = _Walk(schema, self._fragments, lim.default_first)
            depth, cost = walk.selections(node.selection_set, root, 0, frozenset())
            if walk.aliases > lim.max_aliases:
                self.report_error(GraphQLError(
                    f"the operation uses {walk.aliases} aliases; at most {lim.max_aliases} are accepted. "
                    "Send fewer fields per request, or use a list field", node,
                    extensions={"code": "TOO_MANY_ALIASES", "count": walk.aliases, "limit": lim.max_aliases}))
            if depth > lim.max_depth:
                self.report_error(GraphQLError(
                    f"query depth {depth} exceeds the limit of {lim.max_depth}", node,
                    extensions={"code": "QUERY_TOO_DEEP", "depth": depth, "limit": lim.max_depth}))
            if cost > lim.max_cost:
                self.report_error(GraphQLError(
                    f"query cost {cost} exceeds the limit of {lim.max_cost}; ask for fewer or smaller pages, "
                    "and fewer consistent reads or model calls per request", node,
                    extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": lim.max_cost}))

    return QueryLimits
