"""Generated GraphQL mutations: the SDL of command Structs, and input -> command validation.

A small Product domain defined here pins the mapping rules (creating commands, Money
overrides, Meta constraints, lists, defaults); the bank's own commands check that the
generator reproduces today's API.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

import graphql
import msgspec
import pytest
from msgspec import Meta

from eventray.aggregates import ACCOUNT, USER
from eventray.aggregates.account import (
    CloseAccount,
    Deposit,
    FreezeAccount,
    OpenAccount,
    UnfreezeAccount,
    Withdraw,
)
from eventray.aggregates.user import (
    ChangeEmail,
    DeactivateUser,
    RegisterUser,
    SendSupportMessage,
    SubmitIdentityDocument,
    UpdateProfile,
)
from eventray.platform.domain import AggregateType, Command, Event
from eventray.platform.errors import AppInvalid, InvalidCommand, UnknownCommandType
from eventray.serving.api.generate import (
    ID_PATTERN,
    CommandField,
    CommandSpec,
    build_command,
    command_specs,
    commands_sdl,
)

ROOT = Path(__file__).resolve().parents[2]
BASE_SDL = """
directive @cost(weight: Int!, consistent: Int) on FIELD_DEFINITION
scalar Money
type Query { x: Int }
type Mutation { _: Boolean }
type Ok { v: Int }
union CommandResult = Ok
"""
BANK_COMMANDS = (RegisterUser, UpdateProfile, ChangeEmail, DeactivateUser, SendSupportMessage, SubmitIdentityDocument,
                 OpenAccount, Deposit, Withdraw, FreezeAccount, UnfreezeAccount, CloseAccount)


# --- a test domain -------------------------------------------------------------------------


class AddProduct(Command, frozen=True, kw_only=True):
    """Add a product to the catalogue.

    This second paragraph is not part of the GraphQL description.
    """

    creates: ClassVar[bool] = True
    name: Annotated[str, Meta(min_length=1, max_length=40, description="Shown in the shop.")]
    price: Annotated[int, Meta(ge=0, extra={"graphql": "Money"})]
    tags: list[str] = []


class ReserveStock(Command, frozen=True, kw_only=True):
    """Hold ``quantity`` items for an order."""

    quantity: Annotated[int, Meta(gt=0, le=1000)]
    note: str | None = None


class RetireProduct(Command, frozen=True, kw_only=True):
    reason: Annotated[str, Meta(description='Say """why""".\nA second line ends with "')] = ""


class RelabelProduct(Command, frozen=True, kw_only=True, rename="camel"):
    """A command whose msgspec names are camelCase too (``rename="camel"``)."""

    new_label: Annotated[str, Meta(max_length=5)]


class ProductAdded(Event, frozen=True, kw_only=True):
    name: str


class ProductState(msgspec.Struct, frozen=True):
    name: str


def _decide(state: ProductState | None, command: Command) -> tuple[Event, ...]:
    return (ProductAdded(name="p"),)


def _evolve(state: ProductState | None, event: Event) -> ProductState:
    return ProductState(name="p")


PRODUCT_COMMANDS = (AddProduct, ReserveStock, RetireProduct, RelabelProduct)
PRODUCT: AggregateType[ProductState] = AggregateType(
    name="Product", state_type=ProductState, decide=_decide, evolve=_evolve,
    commands=PRODUCT_COMMANDS, events=(ProductAdded,),
)


class Item(msgspec.Struct, frozen=True):
    sku: str


class WithDict(Command, frozen=True, kw_only=True):
    counts: dict[str, int]


class WithStruct(Command, frozen=True, kw_only=True):
    item: Item


class WithUnion(Command, frozen=True, kw_only=True):
    either: int | str


class WithBadOverride(Command, frozen=True, kw_only=True):
    price: Annotated[int, Meta(extra={"graphql": "Money!}"})]


class WithIdField(Command, frozen=True, kw_only=True):
    product_id: str


def _aggregate(name: str, *commands: type[Command]) -> AggregateType[ProductState]:
    return AggregateType(name=name, state_type=ProductState, decide=_decide, evolve=_evolve,
                         commands=commands, events=(ProductAdded,))


@pytest.fixture(scope="module")
def specs() -> dict[str, CommandSpec]:
    return command_specs([PRODUCT], PRODUCT_COMMANDS)


@pytest.fixture(scope="module")
def schema(specs: dict[str, CommandSpec]) -> graphql.GraphQLSchema:
    return graphql.build_schema(BASE_SDL + commands_sdl(specs))


def _build(spec: CommandSpec, raw: dict[str, Any]) -> Command:
    return build_command(spec, raw, subject="alice", correlation_id="req-1")


# --- specs ---------------------------------------------------------------------------------


def test_specs_are_keyed_by_mutation_in_the_order_given(specs: dict[str, CommandSpec]) -> None:
    assert list(specs) == ["addProduct", "reserveStock", "retireProduct", "relabelProduct"]
    add = specs["addProduct"]
    assert (add.command, add.input_type, add.id_field, add.id_optional) == (
        AddProduct, "AddProductInput", "productId", True)
    assert specs["reserveStock"].id_optional is False
    assert add.description == "Add a product to the catalogue."
    assert specs["reserveStock"].description == "Hold `quantity` items for an order."
    assert specs["retireProduct"].description is None


def test_fields_map_types_nullability_and_descriptions(specs: dict[str, CommandSpec]) -> None:
    assert specs["addProduct"].fields == (
        CommandField("name", "name", "String!", "Shown in the shop."),
        CommandField("price", "price", "Money!", None),
        CommandField("tags", "tags", "[String!]", None),
    )
    assert specs["reserveStock"].fields == (
        CommandField("quantity", "quantity", "Int!", None),
        CommandField("note", "note", "String", None),
    )
    assert [f.graphql for f in specs["relabelProduct"].fields] == ["newLabel"]


@pytest.mark.parametrize("command, where", [
    (WithDict, "counts"), (WithStruct, "item"), (WithUnion, "either"), (WithBadOverride, "price"),
])
def test_an_unmappable_field_type_is_refused_naming_the_field(command: type[Command], where: str) -> None:
    with pytest.raises(AppInvalid) as e:
        command_specs([_aggregate("Other", command)], [command])
    assert f"{command.__name__}.{where}" in e.value.message
    assert "graphql" in e.value.message


def test_the_unmappable_message_says_how_to_annotate() -> None:
    with pytest.raises(AppInvalid, match=r"Meta\(extra=\{'graphql': '<ScalarName>'\}\)"):
        command_specs([_aggregate("Other", WithDict)], [WithDict])


def test_two_commands_with_one_mutation_name_are_refused() -> None:
    def other_add_product() -> type[Command]:
        class AddProduct(Command, frozen=True, kw_only=True):  # same name, another aggregate
            pass
        return AddProduct

    twin = other_add_product()
    with pytest.raises(AppInvalid, match="'addProduct'") as e:
        command_specs([PRODUCT, _aggregate("Shelf", twin)], [AddProduct, twin])
    assert type(e.value) is AppInvalid
    assert "other_add_product" in e.value.message


def test_a_field_taking_the_id_fields_name_is_refused() -> None:
    with pytest.raises(AppInvalid, match=r"WithIdField\.product_id.*productId"):
        command_specs([_aggregate("Product", WithIdField)], [WithIdField])


def test_a_command_no_aggregate_handles_is_refused() -> None:
    with pytest.raises(UnknownCommandType, match="Deposit"):
        command_specs([PRODUCT], [Deposit])


# --- SDL -----------------------------------------------------------------------------------


def test_no_specs_give_no_sdl() -> None:
    assert commands_sdl({}) == ""


def test_the_sdl_builds_with_typed_inputs(schema: graphql.GraphQLSchema) -> None:
    add = schema.type_map["AddProductInput"]
    assert isinstance(add, graphql.GraphQLInputObjectType)
    assert {name: str(f.type) for name, f in add.fields.items()} == {
        "productId": "ID", "name": "String!", "price": "Money!", "tags": "[String!]",
        "commandId": "ID", "expectedVersion": "Int",
    }
    assert list(add.fields) == ["productId", "name", "price", "tags", "commandId", "expectedVersion"]
    reserve = schema.type_map["ReserveStockInput"]
    assert isinstance(reserve, graphql.GraphQLInputObjectType)
    assert str(reserve.fields["productId"].type) == "ID!"
    assert str(reserve.fields["note"].type) == "String"


def test_the_sdl_carries_descriptions(schema: graphql.GraphQLSchema) -> None:
    add = schema.type_map["AddProductInput"]
    assert isinstance(add, graphql.GraphQLInputObjectType)
    assert add.description == "Add a product to the catalogue."
    assert add.fields["productId"].description == "Left out: a new id is generated."
    assert add.fields["name"].description == "Shown in the shop."
    retire = schema.type_map["RetireProductInput"]
    assert isinstance(retire, graphql.GraphQLInputObjectType)
    # quotes and newlines survive the block string
    assert retire.fields["reason"].description == 'Say """why""".\nA second line ends with "'
    assert schema.mutation_type is not None
    assert schema.mutation_type.fields["addProduct"].description == "Add a product to the catalogue."


def test_the_sdl_extends_mutation_and_declares_command_input(schema: graphql.GraphQLSchema) -> None:
    mutation = schema.mutation_type
    assert mutation is not None
    assert {n: (str(f.args["input"].type), str(f.type)) for n, f in mutation.fields.items() if n != "_"} == {
        "addProduct": ("AddProductInput!", "CommandResult!"),
        "reserveStock": ("ReserveStockInput!", "CommandResult!"),
        "retireProduct": ("RetireProductInput!", "CommandResult!"),
        "relabelProduct": ("RelabelProductInput!", "CommandResult!"),
    }
    command_input = schema.type_map["CommandInput"]
    assert isinstance(command_input, graphql.GraphQLInputObjectType)
    assert command_input.is_one_of
    assert {n: str(f.type) for n, f in command_input.fields.items()} == {
        "addProduct": "AddProductInput", "reserveStock": "ReserveStockInput",
        "retireProduct": "RetireProductInput", "relabelProduct": "RelabelProductInput",
    }


# --- build_command -------------------------------------------------------------------------


def test_build_command_takes_camel_case_input_and_stamps_the_caller(specs: dict[str, CommandSpec]) -> None:
    command = _build(specs["addProduct"], {"name": "Lamp", "price": 1999})
    assert isinstance(command, AddProduct)
    assert (command.name, command.price, command.tags) == ("Lamp", 1999, [])
    assert (command.subject, command.correlation_id, command.expected_version) == ("alice", "req-1", None)
    assert re.fullmatch(r"[0-9a-f]{32}", command.aggregate_id)
    assert re.fullmatch(r"[0-9a-f]{32}", command.command_id)
    assert command.aggregate_id != command.command_id


def test_build_command_uses_the_ids_and_version_given(specs: dict[str, CommandSpec]) -> None:
    command = _build(specs["reserveStock"], {
        "productId": "prod:1@shop", "quantity": 3, "note": None, "commandId": "cmd-7", "expectedVersion": 0})
    assert command == ReserveStock(aggregate_id="prod:1@shop", command_id="cmd-7", expected_version=0,
                                   subject="alice", correlation_id="req-1", quantity=3, note=None)


def test_a_null_for_a_defaulted_field_takes_the_default(specs: dict[str, CommandSpec]) -> None:
    command = _build(specs["addProduct"], {"name": "Lamp", "price": 0, "tags": None})
    assert isinstance(command, AddProduct) and command.tags == []
    command = _build(specs["retireProduct"], {"productId": "p1", "reason": None})
    assert isinstance(command, RetireProduct) and command.reason == ""


def test_renamed_struct_fields_are_converted_and_located(specs: dict[str, CommandSpec]) -> None:
    command = _build(specs["relabelProduct"], {"productId": "p1", "newLabel": "abc"})
    assert isinstance(command, RelabelProduct) and (command.aggregate_id, command.new_label) == ("p1", "abc")
    with pytest.raises(InvalidCommand) as e:
        _build(specs["relabelProduct"], {"productId": "p1", "newLabel": "abcdef"})
    assert e.value.details == {"field": "newLabel"}


@pytest.mark.parametrize("mutation, raw, field, problem", [
    ("addProduct", {"name": "x" * 41, "price": 1}, "name", "name: Expected `str` of length <= 40"),
    ("addProduct", {"name": "", "price": 1}, "name", "name: Expected `str` of length >= 1"),
    ("addProduct", {"name": "Lamp", "price": -1}, "price", "price: Expected `int` >= 0"),
    ("addProduct", {"name": "Lamp", "price": True}, "price", "price: Expected `int`, got `bool`"),
    ("addProduct", {"name": "Lamp", "price": 1, "tags": ["a", 2]}, "tags",
     "tags: Expected `str`, got `int` (at tags[1])"),
    ("addProduct", {"price": 1}, "name", "name: required"),
    ("addProduct", {"name": None, "price": 1}, "name", "name: must not be null"),
    ("reserveStock", {"productId": "p1", "quantity": 0}, "quantity", "quantity: Expected `int` >= 1"),  # msgspec reads gt=0 as >= 1
    ("reserveStock", {"productId": "p1", "quantity": 1001}, "quantity", "quantity: Expected `int` <= 1000"),
    ("reserveStock", {"quantity": 1}, "productId", "productId: required"),
    ("reserveStock", {"productId": None, "quantity": 1}, "productId", "productId: required"),
    ("reserveStock", {"productId": "p 1", "quantity": 1}, "productId", "productId: may hold only"),
    ("reserveStock", {"productId": "p1\n", "quantity": 1}, "productId", "productId: may hold only"),
    ("reserveStock", {"productId": "", "quantity": 1}, "productId", "productId: must be 1..128 characters"),
    ("reserveStock", {"productId": "p" * 129, "quantity": 1}, "productId",
     "productId: must be 1..128 characters, got 129"),
    ("reserveStock", {"productId": 7, "quantity": 1}, "productId", "productId: must be a string"),
    ("addProduct", {"productId": "bad/id", "name": "Lamp", "price": 1}, "productId", "productId: may hold"),
    ("reserveStock", {"productId": "p1", "commandId": "c" * 129, "quantity": 1}, "commandId",
     "commandId: must be 1..128"),
    ("reserveStock", {"productId": "p1", "expectedVersion": -1, "quantity": 1}, "expectedVersion",
     "expectedVersion: must be an integer >= 0, got -1"),
    ("reserveStock", {"productId": "p1", "expectedVersion": True, "quantity": 1}, "expectedVersion",
     "expectedVersion: must be an integer >= 0, got True"),
    ("reserveStock", {"productId": "p1", "quantity": 1, "subject": "mallory"}, "subject",
     "subject: not a field of ReserveStockInput"),
    ("reserveStock", {"productId": "p1", "quantity": 1, "product_id": "p2"}, "product_id",
     "product_id: not a field of ReserveStockInput"),
])
def test_each_problem_is_an_invalid_command_naming_the_graphql_field(
    specs: dict[str, CommandSpec], mutation: str, raw: dict[str, Any], field: str, problem: str,
) -> None:
    with pytest.raises(InvalidCommand) as e:
        _build(specs[mutation], raw)
    assert e.value.details == {"field": field}
    assert e.value.message.startswith(problem), e.value.message
    assert " - at `$" not in e.value.message


def test_checks_run_id_then_command_id_then_version_then_fields(specs: dict[str, CommandSpec]) -> None:
    raw: dict[str, Any] = {"productId": "p 1", "commandId": "c 1", "expectedVersion": -1, "quantity": 0}
    fields = []
    for key in ("productId", "commandId", "expectedVersion", "quantity"):
        with pytest.raises(InvalidCommand) as e:
            _build(specs["reserveStock"], raw)
        fields.append(e.value.details["field"])
        raw[key] = {"productId": "p1", "commandId": "c1", "expectedVersion": 0, "quantity": 1}[key]
    assert fields == ["productId", "commandId", "expectedVersion", "quantity"]
    assert isinstance(_build(specs["reserveStock"], raw), ReserveStock)


def test_id_pattern_is_the_api_id_rule() -> None:
    assert ID_PATTERN == r"^[A-Za-z0-9._:@-]+$"


# --- the bank ------------------------------------------------------------------------------


def test_the_bank_gives_one_mutation_per_command() -> None:
    specs = command_specs([USER, ACCOUNT], BANK_COMMANDS)
    assert list(specs) == ["registerUser", "updateProfile", "changeEmail", "deactivateUser", "sendSupportMessage",
                           "submitIdentityDocument", "openAccount", "deposit", "withdraw", "freezeAccount",
                           "unfreezeAccount", "closeAccount"]
    assert {s.id_field for s in list(specs.values())[:6]} == {"userId"}
    assert {s.id_field for s in list(specs.values())[6:]} == {"accountId"}
    assert [(f.graphql, f.type_sdl) for f in specs["submitIdentityDocument"].fields] == [("imageBase64", "String!")]
    assert [f.graphql for f in specs["openAccount"].fields] == ["ownerId", "currency"]
    assert specs["deposit"].fields[0].type_sdl in ("Int!", "Money!")


def test_the_bank_inputs_have_the_committed_schemas_fields() -> None:
    generated = graphql.build_schema(BASE_SDL + commands_sdl(command_specs([USER, ACCOUNT], BANK_COMMANDS)))
    committed = graphql.build_schema((ROOT / "serving/bank/schema.graphql").read_text())
    for command in BANK_COMMANDS:
        name = f"{command.__name__}Input"
        ours, theirs = generated.type_map[name], committed.type_map[name]
        assert isinstance(ours, graphql.GraphQLInputObjectType)
        assert isinstance(theirs, graphql.GraphQLInputObjectType)
        assert set(ours.fields) == set(theirs.fields), name


def test_the_bank_builds_its_commands() -> None:
    specs = command_specs([USER, ACCOUNT], BANK_COMMANDS)
    command = _build(specs["openAccount"], {"accountId": "acc-1", "ownerId": "user-1", "currency": "EUR"})
    assert command == OpenAccount(aggregate_id="acc-1", command_id=command.command_id, subject="alice",
                                  correlation_id="req-1", owner_id="user-1", currency="EUR")
    update = _build(specs["updateProfile"], {"userId": "user-1", "name": "Ann"})
    assert isinstance(update, UpdateProfile) and update.bio is None
    with pytest.raises(InvalidCommand) as e:
        _build(specs["deposit"], {"accountId": "acc-1"})
    assert e.value.details == {"field": "amount"}


def test_the_bank_builds_submit_identity_document_and_the_aggregate_checks_the_document() -> None:
    specs = command_specs([USER, ACCOUNT], BANK_COMMANDS)
    command = _build(specs["submitIdentityDocument"], {"userId": "user-1", "imageBase64": "aGk="})
    assert isinstance(command, SubmitIdentityDocument) and command.image_base64 == "aGk="
    with pytest.raises(InvalidCommand) as e:
        _build(specs["submitIdentityDocument"], {"userId": "user-1"})
    assert e.value.details == {"field": "imageBase64"}
