"""Serve autoscaling configurations from settings, checked against oscillation.

Serve decides from the average load over ``look_back_period_s`` (sampled every
``metrics_interval_s``) and acts only after the decision held for ``upscale_delay_s`` /
``downscale_delay_s``. With a delay shorter than the look-back window, the average still
contains the load from before the last scaling step, so Serve scales again on stale load and
the replica count oscillates (up, then down, then up: ray-project/ray#36494-style reports).
The production defaults therefore keep ``metrics_interval_s <= look_back_period_s <=
upscale_delay_s`` and a much longer ``downscale_delay_s`` (cheap to keep a replica,
expensive to cold-start one). :func:`autoscaling_config` refuses a configuration that breaks
the order when ``strict`` (the production profile), and logs a warning otherwise (tests scale
fast on purpose).

Production defaults (GraphQL ``EVENTRAY_GRAPHQL_*``, models ``EVENTRAY_ML_*``):

=====================  =======  =====================================================
setting                default  why
=====================  =======  =====================================================
metrics_interval_s     10       Serve's default sampling
look_back_period_s     30       three samples: one slow request does not move it
upscale_delay_s        30       = the look-back: the window only holds post-step load
downscale_delay_s      600      ten minutes: no flapping on bursty traffic
=====================  =======  =====================================================
"""

from __future__ import annotations

import logging
from typing import Any

from eventray.platform.errors import ConfigurationError

log = logging.getLogger("eventray.serving.autoscaling")


def autoscaling_config(*, prefix: str, min_replicas: int, max_replicas: int, target_ongoing_requests: float,
                       upscale_delay_s: float, downscale_delay_s: float, metrics_interval_s: float,
                       look_back_period_s: float, strict: bool = False) -> dict[str, Any]:
    """Serve's ``autoscaling_config`` dict; raises ConfigurationError on an oscillating setup.

    Args:
        prefix: the settings' environment prefix, for messages (``EVENTRAY_GRAPHQL``).
        strict: raise on an oscillation-prone configuration instead of warning.
    """
    if min_replicas > max_replicas:
        raise ConfigurationError(f"{prefix}_MIN_REPLICAS ({min_replicas}) must not exceed "
                                 f"{prefix}_MAX_REPLICAS ({max_replicas})")
    if metrics_interval_s > look_back_period_s:
        raise ConfigurationError(f"{prefix}_METRICS_INTERVAL_S ({metrics_interval_s}) must not exceed "
                                 f"{prefix}_LOOK_BACK_PERIOD_S ({look_back_period_s}): the window needs a sample")
    for name, delay in (("UPSCALE", upscale_delay_s), ("DOWNSCALE", downscale_delay_s)):
        if delay < look_back_period_s:
            message = (f"{prefix}_{name}_DELAY_S ({delay}) is shorter than {prefix}_LOOK_BACK_PERIOD_S "
                       f"({look_back_period_s}): Serve would act on load from before its last step and "
                       f"oscillate. Raise the delay or shorten the look-back window.")
            if strict:
                raise ConfigurationError(message)
            log.warning("%s", message)
    return {
        "min_replicas": min_replicas, "initial_replicas": max(1, min_replicas), "max_replicas": max_replicas,
        "target_ongoing_requests": target_ongoing_requests, "upscale_delay_s": upscale_delay_s,
        "downscale_delay_s": downscale_delay_s, "metrics_interval_s": metrics_interval_s,
        "look_back_period_s": look_back_period_s,
    }
