"""The model deployments' /metrics text, rendered from replica counts and replica stats (no Serve)."""

from __future__ import annotations

from eventray.serving.models.metrics import render


def test_replicas_batches_and_latencies_render_as_prometheus_text() -> None:
    text = render(app_name="app", replicas={("model-anomaly", "RUNNING"): 3, ("model-anomaly", "STARTING"): 1,
                                            ("GraphQLIngress", "RUNNING"): 1},
                  stats={"anomaly": {"batch_sizes": {1: 5, 12: 2}, "latency_ms": [1.0, 2.0, 3.0, 4.0]},
                         "digits": None})
    lines = text.splitlines()
    assert 'eventray_serve_replicas{app="app",deployment="model-anomaly",state="RUNNING"} 3' in lines
    assert 'eventray_serve_replicas{app="app",deployment="model-anomaly",state="STARTING"} 1' in lines
    assert 'eventray_model_batches_total{model="anomaly",batch_size="12"} 2' in lines
    assert 'eventray_model_inference_seconds{model="anomaly",quantile="0.5"} 0.002500' in lines
    assert 'eventray_model_inference_seconds_sum{model="anomaly"} 0.010000' in lines
    assert 'eventray_model_inference_seconds_count{model="anomaly"} 4' in lines
    assert "eventray_model_stats_errors 1" in lines  # digits could not be read: left out, counted
    assert not [line for line in lines if 'model="digits"' in line]
    for line in lines:  # every sample line is `name{labels} value` or a HELP/TYPE comment
        assert line.startswith("# ") or len(line.rsplit(" ", 1)) == 2
