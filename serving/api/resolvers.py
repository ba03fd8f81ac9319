"""The platform's resolvers: ``me``, ``projections``, one mutation per exposed command, ``submitCommands``.

They are built per schema (:func:`platform_bindables`), since which mutations exist depends on
the app. A mutation validates its input into the command (:mod:`.generate`), asks the command's
rule whether the caller may send it, sends it through the command bus, and returns a
``CommandResult`` member; every refusal is a typed member, never a GraphQL error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ariadne import InterfaceType, MutationType, QueryType, UnionType
from graphql import GraphQLResolveInfo

from eventray.platform.errors import EventrayError, InvalidCommand
from eventray.serving.api import policy
from eventray.serving.api.errors import command_result, error_result, resolve_command_result_type
from eventray.serving.api.generate import CommandSpec, build_command

__all__ = ["platform_bindables"]


def _me(_: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    c = info.context
    principal = c["principal"]
    return {"subject": principal.subject, "role": principal.role.upper(), "requestId": c["request_id"]}


async def _projections(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    from eventray.platform.projections.reads import projection_status

    services = info.context["services"]
    policy.require_admin(info.context["principal"], "read projection status")
    rt = services.runtime
    rows = await projection_status(services.pool, topic=rt.topic, names=list(rt.app.projections))
    return [{"name": p.name, "version": p.version, "lag": p.lag, "deadLetters": p.dead_letters,
             "status": p.status} for p in rows]


def platform_bindables(specs: Mapping[str, CommandSpec], rules: Mapping[type, Any]) -> list[Any]:
    """The platform's bindables for a schema whose exposed commands are ``specs``, with their ``rules``."""
    query = QueryType()
    query.set_field("me", _me)
    query.set_field("projections", _projections)
    bindables: list[Any] = [query, UnionType("CommandResult", resolve_command_result_type),
                            InterfaceType("CommandError", resolve_command_result_type)]
    if not specs:
        return bindables

    async def prepare(info: GraphQLResolveInfo, spec: CommandSpec, raw: dict[str, Any]) -> Any:
        """The authorized command, or a ``CommandResult`` error member."""
        c = info.context
        principal = c["principal"]
        try:
            cmd = build_command(spec, raw, subject=principal.subject, correlation_id=c["request_id"])
            await rules[spec.command](principal, cmd, c)
        except EventrayError as e:
            c["services"].metrics.observe_command(spec.command.__name__, e.code)
            return error_result(e, command_id=raw.get("commandId"), aggregate_id=raw.get(spec.id_field))
        return cmd

    def finish(services: Any, cmd: Any, outcome: Any) -> dict[str, Any]:
        services.metrics.observe_command(type(cmd).__name__, outcome.error_code or "ok")
        return command_result(outcome)

    mutation = MutationType()
    for spec in specs.values():
        def resolver(spec: CommandSpec) -> Any:
            async def resolve(_: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
                prepared = await prepare(info, spec, input)
                if isinstance(prepared, dict):
                    return prepared
                services = info.context["services"]
                return finish(services, prepared, await services.bus.send(prepared))

            return resolve

        mutation.set_field(spec.mutation, resolver(spec))

    @mutation.field("submitCommands")
    async def resolve_submit_commands(_: Any, info: GraphQLResolveInfo, commands: list[dict[str, Any]]) -> list[Any]:
        services = info.context["services"]
        limit = services.serving.max_batch_commands
        if len(commands) > limit:
            raise InvalidCommand(f"at most {limit} commands per submitCommands call", field="commands")
        results: list[Any] = []
        to_send: list[tuple[int, Any]] = []
        for entry in commands:
            (name, raw), = entry.items()  # @oneOf: exactly one field is set
            prepared = await prepare(info, specs[name], raw)
            results.append(prepared)
            if not isinstance(prepared, dict):
                to_send.append((len(results) - 1, prepared))
        outcomes = await services.bus.send_many([cmd for _, cmd in to_send])
        for (i, cmd), outcome in zip(to_send, outcomes):
            results[i] = finish(services, cmd, outcome)
        return results

    return [*bindables, mutation]
