"""Pure ASGI middleware of the GraphQL ingress, one concern per module.

Each is ``Middleware(app, **options)`` with ``async __call__(scope, receive, send)``;
:func:`eventray.serving.app.build_app` stacks them in order.
"""
