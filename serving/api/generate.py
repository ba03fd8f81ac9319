"""GraphQL mutations generated from command Structs: the SDL, and input -> command.

Each command class gives one typed input (``OpenAccount`` -> ``OpenAccountInput``) and one
mutation (``openAccount(input: OpenAccountInput!): CommandResult!``). The input holds the
aggregate id (``accountId``), the command's own fields in camelCase, then ``commandId`` and
``expectedVersion``. The command's msgspec ``Meta`` constraints are its validation rules:
:func:`build_command` lets ``msgspec.convert`` enforce them and names the failing field.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import inspect as mi

from eventray.platform.domain import ID_PATTERN, MAX_ID_LENGTH, AggregateType, Command, new_id
from eventray.platform.errors import AppInvalid, InvalidCommand, UnknownCommandType

__all__ = ["ID_PATTERN", "CommandField", "CommandSpec", "build_command", "command_specs", "commands_sdl"]

#: ids from the API (aggregate ids, command ids): 1..MAX_ID_LENGTH characters of ID_PATTERN
_ID = re.compile(ID_PATTERN)
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_SCALARS = {mi.StrType: "String", mi.IntType: "Int", mi.FloatType: "Float", mi.BoolType: "Boolean"}
_BASE_FIELDS = frozenset(f.name for f in msgspec.structs.fields(Command))
#: the input fields every command has besides the aggregate id, by command attribute
_META_INPUTS = {"command_id": "commandId", "expected_version": "expectedVersion"}
_AT = re.compile(r"^(?P<problem>.*) - at `\$\.(?P<key>[^.\[`]+)(?P<rest>[^`]*)`$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")


@dataclass(frozen=True)
class CommandField:
    """One input field of a command's mutation.

    Attributes:
        name: the command attribute (``"owner_id"``).
        graphql: the input field name, camelCase (``"ownerId"``).
        type_sdl: its GraphQL type (``"String!"``, ``"Money!"``, ``"Int"``, ``"[String!]"``).
        description: from ``msgspec.Meta(description=...)``, if any.
    """

    name: str
    graphql: str
    type_sdl: str
    description: str | None


@dataclass(frozen=True)
class CommandSpec:
    """How one command becomes a GraphQL mutation.

    Attributes:
        command: the command class.
        mutation: the mutation's name, the class name in lowerCamel (``"openAccount"``).
        input_type: the input type's name (``"OpenAccountInput"``).
        id_field: the input field of the aggregate id (``"accountId"``).
        id_optional: the command creates its aggregate (ClassVar ``creates = True``): the id
            may be left out, and a new one is generated.
        fields: the command's own input fields, in declaration order.
        description: the first paragraph of the command's docstring.
    """

    command: type[Command]
    mutation: str
    input_type: str
    id_field: str
    id_optional: bool
    fields: tuple[CommandField, ...]
    description: str | None


def command_specs(
    aggregates: Sequence[AggregateType[Any]], commands: Iterable[type[Command]]
) -> dict[str, CommandSpec]:
    """The mutation specs of ``commands``, by mutation name, in the order of ``commands``.

    Raises:
        UnknownCommandType: no aggregate of ``aggregates`` handles one of ``commands``.
        AppInvalid: a field's type has no GraphQL mapping, two input fields or two commands
            get the same name, or two aggregates handle one command.
    """
    specs: dict[str, CommandSpec] = {}
    for command in commands:
        spec = _spec(aggregates, command)
        if spec.mutation in specs:
            raise AppInvalid(
                f"commands {_qualname(specs[spec.mutation].command)} and {_qualname(command)} both "
                f"give the mutation {spec.mutation!r}; rename one of them", mutation=spec.mutation,
            )
        specs[spec.mutation] = spec
    return specs


#: what one command mutation costs in a query's budget (a shard call and a Kafka transaction)
COMMAND_COST = 10


def commands_sdl(specs: Mapping[str, CommandSpec]) -> str:
    """The SDL of the inputs, the ``Mutation`` fields and ``CommandInput`` of ``specs``.

    The text extends ``type Mutation``; ``CommandResult`` and the custom scalars the fields
    name (``Money``) are declared elsewhere. No specs give ``""``.
    """
    if not specs:
        return ""
    parts = []
    for s in specs.values():
        id_note = "Left out: a new id is generated." if s.id_optional else None
        lines = [_field_sdl(s.id_field, "ID" if s.id_optional else "ID!", id_note, first=True)]
        lines += [_field_sdl(f.graphql, f.type_sdl, f.description) for f in s.fields]
        lines += ["  commandId: ID", "  expectedVersion: Int"]
        parts.append(f"{_block(s.description)}input {s.input_type} {{\n" + "\n".join(lines) + "\n}")
    mutations = [_field_sdl(f"{s.mutation}(input: {s.input_type}!)", f"CommandResult! @cost(weight: {COMMAND_COST})",
                            s.description, first=i == 0) for i, s in enumerate(specs.values())]
    parts.append("extend type Mutation {\n" + "\n".join(mutations) + "\n}")
    members = "".join(f"\n  {s.mutation}: {s.input_type}" for s in specs.values())
    parts.append(f'"""Exactly one field set: the command to send."""\ninput CommandInput @oneOf {{{members}\n}}')
    return "\n\n".join(parts) + "\n"


def build_command(
    spec: CommandSpec, raw: Mapping[str, Any], *, subject: str | None, correlation_id: str | None
) -> Command:
    """The command for a mutation's input ``raw``, stamped with the caller.

    Checks, in this order: the aggregate id, ``commandId``, ``expectedVersion``, unknown
    input fields, required fields left out or null, then the command's own constraints.
    A null for a field with a default that does not take None counts as left out: the SDL
    declares such a field nullable.

    Raises:
        InvalidCommand: ``f"{field}: {problem}"`` on the first problem, ``field`` being the
            GraphQL input field.
    """
    aggregate_id = raw.get(spec.id_field)
    if aggregate_id is None and not spec.id_optional:
        raise InvalidCommand(f"{spec.id_field}: required", field=spec.id_field)
    aggregate_id = new_id() if aggregate_id is None else _checked_id(spec.id_field, aggregate_id)
    command_id = raw.get("commandId")
    command_id = new_id() if command_id is None else _checked_id("commandId", command_id)
    version = raw.get("expectedVersion")
    # type() rather than isinstance: True is an int, and never a version.
    if version is not None and (type(version) is not int or version < 0):
        raise InvalidCommand(f"expectedVersion: must be an integer >= 0, got {version!r}",
                             field="expectedVersion")
    known = {spec.id_field, "commandId", "expectedVersion", *(f.graphql for f in spec.fields)}
    for key in raw:
        if key not in known:  # as pydantic's extra="forbid" did: a typo is not silently dropped
            raise InvalidCommand(f"{key}: not a field of {spec.input_type}", field=str(key))
    keys, takes_none = _keys(spec.command)
    values: dict[str, Any] = {
        keys["aggregate_id"]: aggregate_id, keys["command_id"]: command_id,
        keys["expected_version"]: version, keys["subject"]: subject, keys["correlation_id"]: correlation_id,
    }
    for f in spec.fields:
        value = raw.get(f.graphql)
        if value is None and f.type_sdl.endswith("!"):
            problem = "must not be null" if f.graphql in raw else "required"
            raise InvalidCommand(f"{f.graphql}: {problem}", field=f.graphql)
        if f.graphql in raw and (value is not None or f.name in takes_none):
            values[keys[f.name]] = value
    try:
        return msgspec.convert(values, spec.command)
    except msgspec.ValidationError as e:
        field, problem = _located(spec, keys, str(e))
        raise InvalidCommand(f"{field}: {problem}", field=field) from None


# --- specs ---------------------------------------------------------------------------------


def _spec(aggregates: Sequence[AggregateType[Any]], command: type[Command]) -> CommandSpec:
    owners = [a for a in aggregates if command in a.commands]
    if len(owners) != 1:
        what = "no aggregate handles" if not owners else "several aggregates handle"
        error = UnknownCommandType if not owners else AppInvalid
        raise error(f"{what} {_qualname(command)}; it must be in the commands of exactly one",
                    command=getattr(command, "__name__", repr(command)))
    id_field = _lower_camel(owners[0].name) + "Id"
    annotations = {f.name: f.type for f in msgspec.structs.fields(command)}
    taken = {id_field: "the aggregate id", **{g: a for a, g in _META_INPUTS.items()}}
    fields = []
    for field in mi.type_info(command).fields:  # type: ignore[attr-defined]
        if field.name in _BASE_FIELDS:
            continue
        where, graphql = f"{_qualname(command)}.{field.name}", _camel(field.name)
        if not _NAME.fullmatch(graphql) or graphql.startswith("__") or graphql in taken:
            raise AppInvalid(f"{where}: its input name {graphql!r} is not free (taken by "
                             f"{taken.get(graphql, 'GraphQL')}); rename the field", field=where)
        taken[graphql] = field.name
        sdl, nullable, description = _sdl(field.type, where, annotations[field.name])
        bang = "" if nullable or not field.required else "!"
        fields.append(CommandField(field.name, graphql, sdl + bang, description))
    return CommandSpec(
        command=command, mutation=_lower_camel(command.__name__), input_type=command.__name__ + "Input",
        id_field=id_field, id_optional=getattr(command, "creates", False) is True,
        fields=tuple(fields), description=_first_paragraph(command.__doc__),
    )


def _sdl(t: mi.Type, where: str, annotation: object) -> tuple[str, bool, str | None]:
    """``t``'s GraphQL type without the outer ``!``, whether it takes null, its description."""
    t, override, description = _unwrap(t, None, None)
    nullable = False
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        if len(members) == 1 and len(t.types) == 2:
            nullable = True
            t, override, description = _unwrap(members[0], override, description)
    if override is not None:
        if not (isinstance(override, str) and _NAME.fullmatch(override)):
            raise AppInvalid(f"{where}: {override!r} in Meta(extra={{'graphql': ...}}) is not a "
                             "GraphQL type name", field=where)
        return override, nullable, description
    if isinstance(t, mi.ListType | mi.VarTupleType):
        item, item_nullable, _ = _sdl(t.item_type, where, annotation)
        return f"[{item}{'' if item_nullable else '!'}]", nullable, description
    if type(t) not in _SCALARS:
        raise AppInvalid(
            f"{where}: no GraphQL input type for {annotation!r}; use str, int, float, bool, X | None "
            "or a list of those, or annotate it with "
            "Annotated[..., msgspec.Meta(extra={'graphql': '<ScalarName>'})]", field=where,
        )
    return _SCALARS[type(t)], nullable, description


def _unwrap(t: mi.Type, override: Any, description: str | None) -> tuple[mi.Type, Any, str | None]:
    # The outermost Meta wins, as it does when a reader reads the annotation.
    while isinstance(t, mi.Metadata):
        override = override if override is not None else (t.extra or {}).get("graphql")
        description = description or (t.extra_json_schema or {}).get("description")
        t = t.type
    return t, override, description


# --- build ---------------------------------------------------------------------------------


# Filled once per command type: type_info resolves annotations, too slow per request.
_KEYS: dict[type[Command], tuple[dict[str, str], frozenset[str]]] = {}


def _keys(command: type[Command]) -> tuple[dict[str, str], frozenset[str]]:
    """Attribute -> the key ``msgspec.convert`` reads (``rename=`` applies); the attributes taking None."""
    if command not in _KEYS:
        fields = mi.type_info(command).fields  # type: ignore[attr-defined]
        takes_none = frozenset(f.name for f in fields if _takes_none(f.type))
        _KEYS[command] = {f.name: f.encode_name for f in fields}, takes_none
    return _KEYS[command]


def _takes_none(t: mi.Type) -> bool:
    t = _unwrap(t, None, None)[0]
    return isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types)


def _checked_id(field: str, value: Any) -> str:
    if type(value) is not str:
        raise InvalidCommand(f"{field}: must be a string, got {type(value).__name__}", field=field)
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidCommand(f"{field}: must be 1..{MAX_ID_LENGTH} characters, got {len(value)}", field=field)
    if not _ID.fullmatch(value):
        raise InvalidCommand(f"{field}: may hold only letters, digits and . _ : @ -", field=field)
    return value


def _located(spec: CommandSpec, keys: dict[str, str], message: str) -> tuple[str, str]:
    """The GraphQL field and the problem of a msgspec error message (path suffix removed)."""
    graphql = {keys[f.name]: f.graphql for f in spec.fields}
    graphql.update({keys[a]: g for a, g in _META_INPUTS.items()})
    graphql[keys["aggregate_id"]] = spec.id_field
    if missing := _MISSING.match(message):
        return graphql.get(missing["key"], missing["key"]), "required"
    if (at := _AT.match(message)) is None:
        return spec.input_type, message
    field = graphql.get(at["key"], at["key"])
    return field, at["problem"] + (f" (at {field}{at['rest']})" if at["rest"] else "")


# --- names and text ------------------------------------------------------------------------


def _lower_camel(name: str) -> str:
    # A leading acronym is lowered whole: "HTTPCall" -> "httpCall", "URL" -> "url".
    head = re.match(r"[A-Z]+(?![a-z])|[A-Z]?", name)
    n = len(head[0]) if head else 0
    return name[:n].lower() + name[n:]


def _camel(name: str) -> str:
    first, *rest = [p for p in name.split("_") if p] or [name]
    return first + "".join(p[:1].upper() + p[1:] for p in rest)


def _qualname(command: object) -> str:
    return f"{getattr(command, '__module__', '?')}.{getattr(command, '__qualname__', command)}"


def _first_paragraph(doc: str | None) -> str | None:
    if not doc or not doc.strip():
        return None
    # RST ``literal`` reads as Markdown `literal` in GraphQL tools.
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split()).replace("``", "`")


def _block(text: str | None, indent: str = "") -> str:
    """``text`` as a GraphQL block string on its own line(s), or ``""``."""
    if not text:
        return ""
    body = text.replace('"""', '\\"""')
    if "\n" in body or body.endswith('"'):
        body = "\n" + "\n".join(indent + line for line in body.split("\n")) + "\n" + indent
    return f'{indent}"""{body}"""\n'


def _field_sdl(name: str, type_sdl: str, description: str | None, *, first: bool = False) -> str:
    # A blank line before a described field, as graphql-core's print_schema writes it.
    gap = "" if first or not description else "\n"
    return f"{gap}{_block(description, '  ')}  {name}: {type_sdl}"
