"""The inventory's GraphQL extension: its read-model queries, ``placeOrder`` and who may do what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ariadne import MutationType, QueryType
from psycopg import sql

import eventray

from .domain import AddProduct, Restock
from .fulfilment import FulfilRequest

query = QueryType()
mutation = MutationType()


def _fulfilment(state: Any) -> dict[str, Any]:
    return {"orderId": state.order_id, "status": state.status.upper(), "reason": state.reason}


async def _one(pool: Any, table: str, key: str, value: str) -> Any:
    async def q(conn: Any, schema: str) -> Any:
        cur = await conn.execute(sql.SQL("SELECT * FROM {}.{} WHERE {} = %s").format(
            sql.Identifier(schema), sql.Identifier(table), sql.Identifier(key)), (value,))
        return await cur.fetchone()

    return await eventray.read_current(pool, "stock_levels", q)


@query.field("product")
async def resolve_product(_: Any, info: Any, sku: str) -> dict[str, Any] | None:
    row = await _one(info.context["services"].pool, "products", "sku", sku)
    return None if row is None else {"sku": row[0], "name": row[1], "available": row[2], "reserved": row[3]}


@query.field("order")
async def resolve_order(_: Any, info: Any, id: str) -> dict[str, Any] | None:
    principal = info.context["principal"]
    row = await _one(info.context["services"].pool, "orders", "order_id", id)
    if row is None or (principal.role == "customer" and row[1] != principal.subject):
        return None
    return {"id": row[0], "customerId": row[1], "status": row[2].upper(), "reason": row[3]}


@query.field("fulfilment")
async def resolve_fulfilment(_: Any, info: Any, orderId: str) -> dict[str, Any] | None:
    state = await info.context["services"].saga("OrderFulfilment").get(orderId)
    return None if state is None else _fulfilment(state)


@mutation.field("placeOrder")
async def resolve_place_order(_: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
    principal = info.context["principal"]
    if principal.role not in ("customer", "admin") or not principal.subject:
        raise eventray.Forbidden("only a signed-in customer places orders")
    request = FulfilRequest(order_id=input.get("orderId") or eventray.new_id(), customer_id=principal.subject,
                            skus=list(input["skus"]), quantities=list(input["quantities"]))
    return _fulfilment(await info.context["services"].saga("OrderFulfilment").request(request))


async def staff(principal: Any, command: Any, context: Any) -> None:
    if not principal.is_staff:
        raise eventray.Forbidden(f"not allowed to send {type(command).__name__} (staff only)")


extension = eventray.GraphQLExtension(
    sdl=Path(__file__).with_name("schema.graphql"),
    resolvers=[query, mutation],
    commands={AddProduct: staff, Restock: staff},
)
