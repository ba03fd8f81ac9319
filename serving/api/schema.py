"""The executable schema of an app: the platform's SDL, one mutation per command, the app's own.

Merged by Ariadne from, in order:

1. ``serving/graphql/platform.graphql``: ``me``, ``projections``, ``events``, ``CommandResult``
   and its typed error members;
2. the generated inputs and mutations of the commands the app exposes (:mod:`.generate`), and
   ``submitCommands`` over all of them;
3. ``serving/graphql/models.graphql`` when the app uses model deployments;
4. the app's ``GraphQLExtension.sdl`` with its resolvers.

An extension that does not merge (a type defined twice, a field on a type that does not
exist, a resolver for a field the SDL lacks) is a :class:`SchemaMergeError` that says so.
"""

from __future__ import annotations

import datetime
from importlib import resources
from typing import Any

from ariadne import ScalarType, make_executable_schema
from graphql import GraphQLError, GraphQLSchema, print_schema

from eventray.platform.errors import SchemaMergeError
from eventray.serving.api.generate import command_specs, commands_sdl
from eventray.serving.api.policy import admins_only
from eventray.serving.api.resolvers import platform_bindables
from eventray.serving.api.subscriptions import subscription

__all__ = ["SUBMIT_COMMANDS_SDL", "executable_schema", "printed_sdl", "schema_parts"]

json_scalar = ScalarType("JSON")


def _timestamp(value: Any) -> int | float:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return value


timestamp_scalar = ScalarType("Timestamp", serializer=_timestamp)

SUBMIT_COMMANDS_SDL = '''type Mutation {
  """
  Several commands in one request, for bulk clients; results come back in the same order.
  """
  submitCommands(commands: [CommandInput!]!): [CommandResult!]! @cost(weight: 100)
}
'''


def _sdl_file(name: str) -> str:
    return resources.files("eventray.serving").joinpath(f"graphql/{name}").read_text()


def schema_parts(rt: Any) -> tuple[list[str], list[Any], dict[str, Any]]:
    """``(type_defs, bindables, extension)`` of the app of ``rt``: what :func:`executable_schema` merges."""
    app = rt.app
    ext = app.graphql_extension()
    rules = dict(ext.commands) if app.graphql is not None else dict.fromkeys(app.command_types, admins_only)
    specs = command_specs(app.aggregates, rules)
    type_defs = [_sdl_file("platform.graphql")]
    if specs:
        type_defs += [SUBMIT_COMMANDS_SDL, commands_sdl(specs)]
    bindables: list[Any] = [*platform_bindables(specs, rules), subscription, json_scalar, timestamp_scalar]
    if app.models:
        from ariadne import upload_scalar

        from eventray.serving.api.ml import ml_query

        type_defs.append(_sdl_file("models.graphql"))
        bindables += [ml_query, upload_scalar]
    if ext.sdl_text().strip():
        type_defs.append(ext.sdl_text())
    bindables += list(ext.resolvers)
    return type_defs, bindables, {"extension": ext, "specs": specs}


def executable_schema(rt: Any) -> GraphQLSchema:
    """The schema of the app of ``rt`` with every resolver bound.

    Raises:
        SchemaMergeError: the app's SDL or resolvers do not merge with the platform's.
    """
    type_defs, bindables, _ = schema_parts(rt)
    try:
        return make_executable_schema(type_defs, *bindables)
    except (GraphQLError, TypeError, ValueError) as e:
        raise SchemaMergeError(
            f"the GraphQL extension of app {rt.app.name!r} does not merge with the platform's schema: {e}. "
            "Extend the platform's root types with `extend type Query { ... }` (and Mutation, Subscription), "
            "and bind resolvers only to fields your SDL declares") from None


def printed_sdl(rt: Any) -> str:
    """What ``eventray schema`` prints: the app's executable schema in SDL."""
    return print_schema(executable_schema(rt)) + "\n"
