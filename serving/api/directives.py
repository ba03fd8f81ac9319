"""The platform's field directives as the schema carries them (``@cost``, ``@reads``)."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import DirectiveNode, GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema


def field_directives(schema: GraphQLSchema, name: str) -> Iterator[tuple[str, str, DirectiveNode]]:
    """``(type name, field name, directive)`` of every use of ``@name`` on a field definition."""
    for type_ in schema.type_map.values():
        if not isinstance(type_, (GraphQLObjectType, GraphQLInterfaceType)):
            continue
        for field_name, field in type_.fields.items():
            node = field.ast_node
            for d in (node.directives if node is not None else None) or ():
                if d.name.value == name:
                    yield type_.name, field_name, d
