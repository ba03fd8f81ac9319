"""Machine learning for eventray: deterministic training, the ONNX model registry, model families.

The public surface:

* :func:`train_all` trains every model from seeded or shipped data, exports it to ONNX and
  records it in the registry (``eventray models train``).
* :class:`Registry` reads the manifest and the default versions; :func:`promote` switches a
  model's default version (``eventray models promote NAME VERSION``).
* :data:`FAMILIES` maps a model name to its :class:`~eventray.platform.ml.families.Family`:
  input validation, batched ONNX Runtime inference and output splitting, shared by the Serve
  deployments, the benchmark and the tests.
* :class:`MovementFeatures` turns money movements into the anomaly model's features and keeps
  the per-account z-score baseline.
"""

from eventray.platform.ml.features import MovementFeatures, Movement, FEATURE_NAMES
from eventray.platform.ml.registry import ModelRecord, Registry, promote
from eventray.platform.ml.training import train_all, MODEL_NAMES

__all__ = [
    "FEATURE_NAMES", "MODEL_NAMES", "ModelRecord", "Movement", "MovementFeatures", "Registry",
    "promote", "train_all",
]
