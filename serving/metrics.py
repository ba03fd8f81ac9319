"""Prometheus text metrics for the ingress: a tiny registry, no global state.

Counters and a latency histogram per replica; ``/metrics`` renders them in the text
exposition format (version 0.0.4).
"""

from __future__ import annotations

import bisect
from collections import defaultdict


_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The replica's metrics."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(_BUCKETS) + 1))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.commands: dict[tuple[str, str], int] = defaultdict(int)
        self.subscriptions_active = 0
        self.websockets_active = 0

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        self.requests[(path, method, status)] += 1
        self.latency_counts[path][bisect.bisect_left(_BUCKETS, seconds)] += 1
        self.latency_sum[path] += seconds

    def observe_command(self, command: str, result: str) -> None:
        self.commands[(command, result)] += 1

    def render(self) -> str:
        out = ["# HELP eventray_http_requests_total HTTP requests by path, method and status.",
               "# TYPE eventray_http_requests_total counter"]
        for (path, method, status), n in sorted(self.requests.items()):
            out.append(f'eventray_http_requests_total{{path="{path}",method="{method}",status="{status}"}} {n}')
        out += ["# HELP eventray_http_request_duration_seconds HTTP request latency.",
                "# TYPE eventray_http_request_duration_seconds histogram"]
        for path, counts in sorted(self.latency_counts.items()):
            cumulative = 0
            for bound, n in zip((*_BUCKETS, float("inf")), counts):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'eventray_http_request_duration_seconds_bucket{{path="{path}",le="{le}"}} {cumulative}')
            out.append(f'eventray_http_request_duration_seconds_sum{{path="{path}"}} {self.latency_sum[path]:.6f}')
            out.append(f'eventray_http_request_duration_seconds_count{{path="{path}"}} {cumulative}')
        out += ["# HELP eventray_commands_total Commands by type and result (ok or error code).",
                "# TYPE eventray_commands_total counter"]
        for (command, result), n in sorted(self.commands.items()):
            out.append(f'eventray_commands_total{{command="{command}",result="{result}"}} {n}')
        out += ["# HELP eventray_subscriptions_active Live GraphQL subscriptions on this replica.",
                "# TYPE eventray_subscriptions_active gauge",
                f"eventray_subscriptions_active {self.subscriptions_active}",
                "# HELP eventray_websockets_active Open WebSocket connections on this replica.",
                "# TYPE eventray_websockets_active gauge",
                f"eventray_websockets_active {self.websockets_active}"]
        return "\n".join(out) + "\n"
