"""Every cluster config passes Ray's own validator offline; the KubeRay manifest has what eventray needs."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "platform" / "deploy" / "cluster"
CONFIGS = [ROOT / "ray_cluster.yaml", *sorted(CLUSTER.glob("*.yaml"))]
LAUNCHER_CONFIGS = [p for p in CONFIGS if "kuberay" not in p.name]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_config_passes_rays_validator(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    assert any("eventray-dist" in k for k in config["file_mounts"]), "the built wheel is not shipped"
    setup = " ".join(config["setup_commands"])
    assert "eventray-" in setup and ".whl" in setup, "setup does not install the wheel"
    assert "EVENTRAY_KAFKA_BOOTSTRAP" in setup and "EVENTRAY_DATABASE_URL" in setup
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    if raw["provider"]["type"] != "local":  # the local provider derives its node types from the IPs
        worker = next(t for n, t in types.items() if n != config["head_node_type"])
        assert worker["min_workers"] < worker["max_workers"], "workers cannot autoscale"
        assert "eventray" in worker["resources"]


def test_default_is_aws_with_all_in_one_option() -> None:
    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    assert raw["provider"]["type"] == "aws"
    assert "eventray dev up" in " ".join(raw["head_setup_commands"])
    assert {"gcp", "azure", "local"} <= {yaml.safe_load(p.read_text())["provider"]["type"] for p in LAUNCHER_CONFIGS}


def test_a_broken_config_is_refused() -> None:
    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    raw["available_node_types"]["worker"]["min_workers"] = "two"
    with pytest.raises(Exception, match="two"):
        validate_config(prepare_config(raw))


def test_kuberay_manifest_has_what_eventray_needs() -> None:
    doc = yaml.safe_load((CLUSTER / "kuberay-rayservice.yaml").read_text())
    assert doc["apiVersion"].startswith("ray.io/") and doc["kind"] == "RayService"
    serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
    [app] = serve["applications"]
    module, attr = app["import_path"].split(":")
    assert module.startswith("eventray.") and importlib.util.find_spec(module) is not None
    assert [d["name"] for d in app["deployments"]] == ["GraphQLIngress"]
    cluster = doc["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == importlib.import_module("ray").__version__
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert any(e.get("secretRef") for e in head["envFrom"]), "EVENTRAY_* must come from a secret"
    [workers] = cluster["workerGroupSpecs"]
    assert workers["minReplicas"] < workers["maxReplicas"]
    env = {e["name"]: e["value"] for e in workers["template"]["spec"]["containers"][0]["env"]}
    assert env["EVENTRAY_ACTOR_RESOURCE"] == "eventray" and "eventray" in workers["rayStartParams"]["resources"]


def test_kuberay_image_is_built_from_the_shipped_dockerfile() -> None:
    """The manifest's image is the Dockerfile's: Ray's image of the manifest's version plus this wheel."""
    import re
    import tomllib

    doc = yaml.safe_load((CLUSTER / "kuberay-rayservice.yaml").read_text())
    cluster = doc["spec"]["rayClusterConfig"]
    images = {c["image"] for c in [*cluster["headGroupSpec"]["template"]["spec"]["containers"],
                                   *cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"]]}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert images == {f"eventray:{version}"}
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"^ARG RAY_VERSION={re.escape(cluster['rayVersion'])}$", dockerfile, re.M)
    assert f"eventray-{version}-py3-none-any.whl" in dockerfile and "pip install" in dockerfile
