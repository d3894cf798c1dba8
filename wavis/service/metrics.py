"""Prometheus metrics (``prometheus-client``), one registry per app, served at ``/metrics``.

* ``wavis_http_requests_total{method,route,status}`` and
  ``wavis_http_request_duration_seconds{method,route}`` — ``route`` is the route template
  (``/api/v1/keys/{key_id}``), never the raw path, so ids do not explode the label set;
* ``wavis_http_requests_in_flight``;
* ``wavis_compute_queue_depth``, ``wavis_compute_running`` (the engine, read at scrape time);
* ``wavis_ciphertext_cache_usage_ratio`` (Redis memory / maxmemory) and
  ``wavis_ciphertext_evictions_total`` (LRU evictions, all processes: a Redis counter);
* ``wavis_webhook_events_pending`` and ``wavis_webhook_oldest_pending_seconds`` (the webhook
  outbox's backlog, all processes; read from PostgreSQL at scrape time).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    in_flight: Gauge
    queue_depth: Gauge
    running: Gauge
    cache_usage: Gauge
    evictions: Gauge
    deletions: Gauge
    webhook_pending: Gauge
    webhook_oldest: Gauge


def create() -> Metrics:
    reg = CollectorRegistry(auto_describe=True)
    return Metrics(
        registry=reg,
        requests=Counter("wavis_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=reg),
        latency=Histogram("wavis_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                          buckets=BUCKETS, registry=reg),
        in_flight=Gauge("wavis_http_requests_in_flight", "HTTP requests being handled", registry=reg),
        queue_depth=Gauge("wavis_compute_queue_depth", "compute jobs queued or running (all processes)", registry=reg),
        running=Gauge("wavis_compute_running", "compute jobs running", registry=reg),
        cache_usage=Gauge("wavis_ciphertext_cache_usage_ratio", "ciphertext store memory / maxmemory (NaN: no cap)",
                          registry=reg),
        evictions=Gauge("wavis_ciphertext_evictions_total", "ciphertexts evicted by the LRU store (all processes)",
                        registry=reg),
        deletions=Gauge("wavis_ciphertext_deletions_total", "ciphertexts deleted from the durable store, by reason",
                        ["reason"], registry=reg),
        webhook_pending=Gauge("wavis_webhook_events_pending", "webhook events waiting for (re)delivery",
                              registry=reg),
        webhook_oldest=Gauge("wavis_webhook_oldest_pending_seconds", "age of the oldest pending webhook event",
                             registry=reg),
    )


def route_label(request: web.Request) -> str:
    info = request.match_info
    if getattr(info, "http_exception", None) is not None:
        return "unmatched"
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    return getattr(resource, "canonical", None) or "unmatched"
