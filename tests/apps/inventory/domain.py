"""The Product and Order aggregates: pure decide/evolve over frozen msgspec events."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

import eventray

Quantity = Annotated[int, msgspec.Meta(gt=0, le=1_000_000)]


class OutOfStock(eventray.RuleViolation):
    """The product has fewer items available than the order asks for."""

    code = "OUT_OF_STOCK"


class BadOrder(eventray.InvalidCommand):
    """The order's lines are not valid (no line, or skus and quantities of different lengths)."""

    code = "BAD_ORDER"


# --- Product ---------------------------------------------------------------------------------


class AddProduct(eventray.Command, frozen=True, kw_only=True):
    """Add the product ``aggregate_id`` (its SKU) with an initial stock."""

    creates: ClassVar[bool] = True

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    stock: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class Restock(eventray.Command, frozen=True, kw_only=True):
    """Add ``quantity`` items to the stock."""

    quantity: Quantity


class ReserveStock(eventray.Command, frozen=True, kw_only=True):
    """Reserve ``quantity`` items for ``order_id``; once per order (a repeat is a no-op)."""

    order_id: str
    quantity: Quantity


class ReleaseStock(eventray.Command, frozen=True, kw_only=True):
    """Give back what ``order_id`` reserved; a no-op when it reserved nothing."""

    order_id: str


class ProductAdded(eventray.Event, frozen=True, kw_only=True):
    name: str
    stock: int


class Restocked(eventray.Event, frozen=True, kw_only=True):
    quantity: int
    available_after: int


class StockReserved(eventray.Event, frozen=True, kw_only=True):
    order_id: str
    quantity: int
    available_after: int
    reserved_after: int


class StockReleased(eventray.Event, frozen=True, kw_only=True):
    order_id: str
    quantity: int
    available_after: int
    reserved_after: int


class ProductState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    available: int
    reserved: dict[str, int] = {}


def decide_product(state: ProductState | None, command: eventray.Command) -> tuple[eventray.Event, ...]:
    if isinstance(command, AddProduct):
        if state is not None:
            raise eventray.AlreadyExists(f"product {command.aggregate_id!r} exists")
        return (ProductAdded(name=command.name, stock=command.stock),)
    if state is None:
        raise eventray.NotFound(f"no product {command.aggregate_id!r}")
    if isinstance(command, Restock):
        return (Restocked(quantity=command.quantity, available_after=state.available + command.quantity),)
    if isinstance(command, ReserveStock):
        if command.order_id in state.reserved:
            return ()
        if command.quantity > state.available:
            raise OutOfStock(f"{command.aggregate_id}: {state.available} available, {command.quantity} asked")
        return (StockReserved(order_id=command.order_id, quantity=command.quantity,
                              available_after=state.available - command.quantity,
                              reserved_after=sum(state.reserved.values()) + command.quantity),)
    if isinstance(command, ReleaseStock):
        held = state.reserved.get(command.order_id, 0)
        if not held:
            return ()
        return (StockReleased(order_id=command.order_id, quantity=held, available_after=state.available + held,
                              reserved_after=sum(state.reserved.values()) - held),)
    raise eventray.InvalidCommand(f"Product does not handle {type(command).__name__}")


def evolve_product(state: ProductState | None, event: eventray.Event) -> ProductState:
    if isinstance(event, ProductAdded):
        return ProductState(name=event.name, available=event.stock)
    assert state is not None
    if isinstance(event, Restocked):
        return msgspec.structs.replace(state, available=event.available_after)
    if isinstance(event, StockReserved):
        return msgspec.structs.replace(state, available=event.available_after,
                                       reserved={**state.reserved, event.order_id: event.quantity})
    if isinstance(event, StockReleased):
        return msgspec.structs.replace(state, available=event.available_after,
                                       reserved={k: v for k, v in state.reserved.items() if k != event.order_id})
    return state


PRODUCT = eventray.AggregateType(
    name="Product", state_type=ProductState, decide=decide_product, evolve=evolve_product,
    commands=(AddProduct, Restock, ReserveStock, ReleaseStock),
    events=(ProductAdded, Restocked, StockReserved, StockReleased),
)


# --- Order -----------------------------------------------------------------------------------


class PlaceOrder(eventray.Command, frozen=True, kw_only=True):
    """Place the order ``aggregate_id``: ``quantities[i]`` items of ``skus[i]``."""

    customer_id: eventray.Id
    skus: list[str]
    quantities: list[int]


class ConfirmOrder(eventray.Command, frozen=True, kw_only=True):
    """Every line is reserved: the order is confirmed."""


class RejectOrder(eventray.Command, frozen=True, kw_only=True):
    """A line could not be reserved: the order is rejected, with why."""

    reason: str


class OrderPlaced(eventray.Event, frozen=True, kw_only=True):
    order_id: str
    customer_id: str
    skus: list[str]
    quantities: list[int]


class OrderConfirmed(eventray.Event, frozen=True, kw_only=True):
    order_id: str


class OrderRejected(eventray.Event, frozen=True, kw_only=True):
    order_id: str
    reason: str


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    status: str  # placed | confirmed | rejected


def decide_order(state: OrderState | None, command: eventray.Command) -> tuple[eventray.Event, ...]:
    oid = command.aggregate_id
    if isinstance(command, PlaceOrder):
        if state is not None:
            return ()  # placed already (a saga's retry)
        if not command.skus or len(command.skus) != len(command.quantities) or min(command.quantities) <= 0:
            raise BadOrder("an order needs as many positive quantities as skus, at least one", field="skus")
        return (OrderPlaced(order_id=oid, customer_id=command.customer_id, skus=command.skus,
                            quantities=command.quantities),)
    if state is None:
        raise eventray.NotFound(f"no order {oid!r}")
    if isinstance(command, ConfirmOrder):
        return () if state.status == "confirmed" else (OrderConfirmed(order_id=oid),)
    if isinstance(command, RejectOrder):
        return () if state.status == "rejected" else (OrderRejected(order_id=oid, reason=command.reason),)
    raise eventray.InvalidCommand(f"Order does not handle {type(command).__name__}")


def evolve_order(state: OrderState | None, event: eventray.Event) -> OrderState:
    if isinstance(event, OrderPlaced):
        return OrderState(customer_id=event.customer_id, status="placed")
    assert state is not None
    if isinstance(event, OrderConfirmed):
        return msgspec.structs.replace(state, status="confirmed")
    if isinstance(event, OrderRejected):
        return msgspec.structs.replace(state, status="rejected")
    return state


ORDER = eventray.AggregateType(
    name="Order", state_type=OrderState, decide=decide_order, evolve=evolve_order,
    commands=(PlaceOrder, ConfirmOrder, RejectOrder), events=(OrderPlaced, OrderConfirmed, OrderRejected),
)
