"""The inventory app: ``eventray serve --app inventory.app:app``."""

from __future__ import annotations

import eventray

from .domain import ORDER, PRODUCT
from .fulfilment import FulfilmentPolicy, OrderFulfilment
from .stock import StockLevels

app = eventray.App(
    "inventory",
    aggregates=[PRODUCT, ORDER],
    projections=[StockLevels],
    sagas=[eventray.Saga(OrderFulfilment, policy=FulfilmentPolicy)],
    graphql="inventory.api:extension",
)
