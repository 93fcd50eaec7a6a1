"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "omniembed_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "omniembed_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.batch_size = Histogram(
            "omniembed_batch_size", "Items per encoder batch", ["model"], buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("omniembed_queue_depth", "Items waiting per model", ["model"], registry=self.registry)
        self.items = Counter(
            "omniembed_items_embedded", "Items embedded", ["model", "modality"], registry=self.registry
        )
        self.jobs = Gauge("omniembed_jobs", "Jobs in the store by status", ["status"], registry=self.registry)
        self.job_store_up = Gauge(
            "omniembed_job_store_up", "1 when the job store answered the last scrape, 0 when it did not (then "
            "omniembed_jobs is left out)", registry=self.registry
        )
