"""End-to-end fixtures: the GraphQL app deployed once per session on Ray Serve.

The app runs as its own Serve application (``eventray-e2e`` at ``/e2e``) beside any demo
deployment, against the stack's default topic: the read models are per projection name, not
per topic, so the tests use fresh aggregate ids instead of a fresh topic. Anonymous access is
off, the rate limit is low enough to trip, and RS256 tokens are checked against a JWKS file
written here. The model deployments are bound into the same app (the ML fields and their
``/metrics``); ``EVENTRAY_E2E_APP`` renames the app (and its route) to keep two sessions apart.
The TransferMoney saga coordinators run on the same topic with the amount-rule fraud scorer
(deterministic, unlike the anomaly model's score); the session stops the ones it started.
The app is the default one (``EVENTRAY_APP``, the bank), through ``stack_runtime``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _gql import RATE_BURST, Client, token

from eventray.platform.composition import Runtime
from eventray.serving.settings import DEV_JWT_SECRET, ServingSettings

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)




@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "e2e-1", "alg": "RS256", "use": "sig"})
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return {"private": key, "jwks": path, "kid": "e2e-1"}


@pytest.fixture(scope="session")
def api(stack_runtime: Runtime, rsa_key: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Shards, projections, the coordinators of both sagas and the Serve app; yields the URLs, settings
    and runtime."""
    from eventray.platform.projections.ensure import ensure_projections
    from eventray.platform.runtime.shards import start_shards
    from eventray.platform.sagas import composition as sagas
    from eventray.platform.sagas.settings import SagaSettings
    from eventray.serving import deployment
    from eventray.serving.bank.fraud import AmountRuleScorer, transfer_policy

    rt = stack_runtime
    start_shards(rt)
    ensure_projections(rt, names=["user_directory", "account_balances", "account_activity"])
    saga_settings = SagaSettings()
    # the policy EVENTRAY_SAGA_* gives, with the amount-rule scorer at its rule_limit
    policy = transfer_policy(scorer="rule")
    ours = not _coordinators_running(rt, "TransferMoney")
    sagas.start_coordinators(rt, saga_settings, "TransferMoney", policy=policy,
                             services={"fraud": AmountRuleScorer(limit=policy.rule_limit).score})
    app = os.environ.get("EVENTRAY_E2E_APP", "eventray-e2e")
    serving = ServingSettings(
        allow_anonymous=False, jwt_secret=DEV_JWT_SECRET, jwks_file=rsa_key["jwks"],
        rate_limit_per_s=20, rate_limit_burst=RATE_BURST, max_query_depth=8, max_query_cost=3000,
        app_name=app, route_prefix=f"/{app.removeprefix('eventray-')}",
    )
    # the model deployments join the app (one replica each), trained once into a cache of the e2e tests
    served = rt.with_settings(model_dir=_e2e_models(), ml_app_name=app, ml_min_replicas=1, ml_max_replicas=1)
    url = deployment.run(served, serving, models=True, saga_settings=saga_settings)
    # KYC with the app's own policy and services: the ocr and faces deployments of this app
    ours_kyc = not _coordinators_running(rt, "KYC")
    sagas.start_coordinators(served, saga_settings, "KYC")
    yield {"url": url, "ws": url.replace("http://", "ws://"), "base": url.rsplit("/", 1)[0],
           "serving": serving, "settings": served.settings, "rt": served}
    deployment.shutdown(serving)
    if ours:  # another session's (or the demo's) coordinators stay up
        sagas.stop_coordinators(rt, "TransferMoney")
    if ours_kyc:
        sagas.stop_coordinators(rt, "KYC")


def _coordinators_running(rt: Runtime, saga: str) -> bool:
    import ray

    from eventray.platform.runtime.actors import NAMESPACE
    from eventray.platform.sagas.actor import coordinator_name

    rt.connect_ray()
    try:
        ray.get_actor(coordinator_name(rt.topic, saga, 0), namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def _e2e_models() -> Path:
    """Trained models for the session (deterministic training, so a cache across sessions is exact),
    and the pretrained ``ocr`` and ``faces`` the KYC saga reads documents with."""
    import tempfile

    from eventray.platform.ml.pretrained import import_pretrained
    from eventray.platform.ml.registry import Registry
    from eventray.platform.ml.training import MODEL_NAMES, train_all

    path = Path(tempfile.gettempdir()) / "eventray-e2e-models"
    missing = [n for n in MODEL_NAMES if n not in Registry(path).names()]  # a cache from before a model existed
    if missing:
        train_all(path, names=missing)
    pretrained = [n for n in ("ocr", "faces") if n not in Registry(path).names()]
    if pretrained:
        import_pretrained(path, pretrained)
    return path


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def client_for(api: dict[str, Any]):
    def make(subject: str, role: str) -> Client:
        return Client(api["url"], token(subject, role))
    return make
