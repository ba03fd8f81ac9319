"""The executable schema: the committed SDL bound to the resolvers."""

from __future__ import annotations

import datetime
import functools
from importlib import resources
from typing import Any

from ariadne import ScalarType, make_executable_schema
from graphql import GraphQLSchema, print_schema

from eventray.serving.api.commands import parse_money, serialize_money
from eventray.serving.api.resolvers import (
    account_type, activity_type, command_error_type, command_result_type, mutation, query, user_type,
)
from eventray.serving.api.ml import ml_query
from eventray.serving.api.sagas import BINDABLES as SAGA_BINDABLES
from eventray.serving.api.subscriptions import subscription

json_scalar = ScalarType("JSON")
money_scalar = ScalarType("Money", serializer=serialize_money, value_parser=parse_money)
def _timestamp(value: Any) -> int | float:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return value


timestamp_scalar = ScalarType("Timestamp", serializer=_timestamp)


def _money_literal(node, variables=None):  # noqa: ANN001 - graphql-core's literal parser signature
    from graphql import IntValueNode, StringValueNode

    if isinstance(node, IntValueNode | StringValueNode):
        return parse_money(node.value if isinstance(node, StringValueNode) else int(node.value))
    return parse_money(None)


money_scalar.set_literal_parser(_money_literal)


def sdl_text() -> str:
    """The committed SDL file, as shipped in the package."""
    return resources.files("eventray.serving").joinpath("graphql/schema.graphql").read_text()


@functools.cache
def executable_schema() -> GraphQLSchema:
    """The schema with every resolver bound (built once per process)."""
    return make_executable_schema(
        sdl_text(), query, ml_query, mutation, subscription, user_type, account_type, activity_type,
        command_result_type, command_error_type, json_scalar, money_scalar, timestamp_scalar, *SAGA_BINDABLES,
    )


def printed_sdl() -> str:
    """What ``eventray schema`` prints: the executable schema in SDL."""
    return print_schema(executable_schema()) + "\n"
