"""Prometheus metrics of the Cursor (DESIGN §10), one registry for the process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_PROCESSED = Counter(
    "cursor_messages_processed_total", "Messages handled, by outcome", ["outcome"]
)
PROCESSING_DURATION = Histogram(
    "cursor_processing_duration_seconds",
    "Wall time of one run",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
SOURCES_EXECUTED = Counter(
    "cursor_sources_executed_total", "Sources run, by handler and result", ["handler_id", "result"]
)
ERRORS = Counter("cursor_errors_total", "Errors, by kind", ["error_type"])
DOCUMENTS_PROCESSED = Counter("cursor_documents_processed_total", "Documents collected")
QUEUE_DEPTH = Gauge("cursor_queue_depth", "Messages in the queue, by state", ["state"])
CONFIG_STALE_SECONDS = Gauge(
    "cursor_config_stale_seconds", "Age of the config served after a failed fetch (0 = fresh)"
)
NOTIFICATIONS = Counter(
    "cursor_notifications_total",
    "Webhooks sent, by event type and result",
    ["event_type", "result"],
)
UNEXPECTED_ERRORS = Counter(
    "cursor_unexpected_errors_total",
    "Exceptions that are not the service's own, by where they were caught",
    ["where"],
)
OUTBOX_PENDING = Gauge(
    "cursor_outbox_pending", "Notifications in the outbox due for delivery at the last scan"
)
RUNS_SWEPT = Counter(
    "cursor_runs_swept_total", "Runs resumed from their journal without their message"
)
