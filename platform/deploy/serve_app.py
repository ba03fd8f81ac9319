"""An import path for Serve configs (KubeRay's ``serveConfigV2``): the GraphQL app from the environment."""

from __future__ import annotations

from eventray.platform.settings import Settings
from eventray.serving.deployment import GraphQLIngress
from eventray.serving.settings import ServingSettings

app = GraphQLIngress.bind(Settings(), ServingSettings())  # type: ignore[attr-defined]  # added by @serve.deployment
