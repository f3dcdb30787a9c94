"""Prometheus metrics of the server (``GET /metrics``, the text format of prometheus-client)."""

from __future__ import annotations

from clsclip.optional import require


class Metrics:
    """Requests by status, latency, batch sizes and queue depth, in a registry of their own
    (so several apps in one process, as in the tests, never share counters)."""

    def __init__(self) -> None:
        prometheus = require("prometheus_client", "serve", purpose="clsclip serve")
        self._prometheus = prometheus
        self.registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter(
            "clsclip_requests", "Segmentation requests by HTTP status", ["status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = prometheus.Histogram(
            "clsclip_request_seconds", "Time from receiving a request to its answer",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )  # fmt: skip
        self.batch_size = prometheus.Histogram(
            "clsclip_batch_size", "Requests per pass through the network",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=self.registry,
        )  # fmt: skip
        self.queue_depth = prometheus.Gauge(
            "clsclip_queue_depth", "Requests waiting for the network", registry=self.registry
        )

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        return self._prometheus.generate_latest(self.registry), self._prometheus.CONTENT_TYPE_LATEST

    def observe(self, status: int, seconds: float) -> None:
        self.requests.labels(status=str(status)).inc()
        self.latency.observe(seconds)
