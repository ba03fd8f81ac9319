"""stock_levels: each product's available and reserved stock, and each order's status."""

from __future__ import annotations

import eventray

from .domain import OrderConfirmed, OrderPlaced, OrderRejected, ProductAdded, Restocked, StockReleased, StockReserved


class StockLevels(eventray.Projection):
    name = "stock_levels"
    version = 1
    tables = (
        eventray.Table("products", ("sku", "name", "available", "reserved"), key=("sku",)),
        eventray.Table("orders", ("order_id", "customer_id", "status", "reason"), key=("order_id",)),
    )
    schema_sql = """
        CREATE TABLE {schema}.products (sku text PRIMARY KEY, name text NOT NULL, available bigint NOT NULL,
                                        reserved bigint NOT NULL);
        CREATE TABLE {schema}.orders (order_id text PRIMARY KEY, customer_id text NOT NULL, status text NOT NULL,
                                      reason text);
        CREATE INDEX orders_by_customer ON {schema}.orders (customer_id);
    """

    @eventray.handles(ProductAdded)
    def added(self, record: eventray.Record, out: eventray.BatchWrites) -> None:
        out.create("products", {"sku": record.envelope.aggregate_id, "name": record.event.name,
                                "available": record.event.stock, "reserved": 0})

    @eventray.handles(Restocked)
    def restocked(self, record: eventray.Record, out: eventray.BatchWrites) -> None:
        out.update("products", record.envelope.aggregate_id, available=record.event.available_after)

    @eventray.handles(StockReserved, StockReleased)
    def moved(self, record: eventray.Record, out: eventray.BatchWrites) -> None:
        out.update("products", record.envelope.aggregate_id, available=record.event.available_after,
                   reserved=record.event.reserved_after)

    @eventray.handles(OrderPlaced)
    def placed(self, record: eventray.Record, out: eventray.BatchWrites) -> None:
        out.create("orders", {"order_id": record.event.order_id, "customer_id": record.event.customer_id,
                              "status": "placed", "reason": None})

    @eventray.handles(OrderConfirmed)
    def confirmed(self, record: eventray.Record, out: eventray.BatchWrites) -> None:
        out.update("orders", record.event.order_id, status="confirmed")

    @eventray.handles(OrderRejected)
    def rejected(self, record: eventray.Record, out: eventray.BatchWrites) -> None:
        out.update("orders", record.event.order_id, status="rejected", reason=record.event.reason)
