"""ML model deployments on Ray Serve: ONNX Runtime sessions with batching, autoscaling and versions.

* :func:`bind_models` / :func:`build_app` / :func:`deploy`: the deployments, configured from settings.
* :class:`MLClient`: calls them with default-version routing and typed errors.
* :mod:`eventray.serving.models.resolvers`: resolver-ready async functions for the GraphQL fields
  in ``serving/graphql/schema.graphql`` (bound in :mod:`eventray.serving.api.ml`).
* :class:`AlertScorer`: scores money movements in batches for the alerts projection.
* :class:`TextAnalyser`: analyses many texts in chunks for the support inbox.
"""

from eventray.serving.models.alerts import Alert, AlertScorer
from eventray.serving.models.client import MLClient
from eventray.serving.models.deployment import bind_models, build_app, deploy, deployment_name
from eventray.serving.models.text_analysis import TextAnalyser

__all__ = ["Alert", "AlertScorer", "MLClient", "TextAnalyser", "bind_models", "build_app", "deploy",
           "deployment_name"]
