"""A second domain, different in shape from the bundled bank: an inventory with orders.

``Product`` holds stock that orders reserve and release; ``Order`` is placed, then confirmed or
rejected; the ``OrderFulfilment`` saga reserves every line of an order across products and, when
one line cannot be had, releases the lines it reserved (in reverse) and rejects the order; the
``stock_levels`` projection serves products and orders to GraphQL. It uses only ``import
eventray``: it is what a user's own package looks like (``app = eventray.App(...)`` in
:mod:`inventory.app`).
"""
