"""Prometheus metrics of the Cursor (architecture §10), one registry for the process."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class KnownOnlyGauge(Collector):
    """
    A gauge that is not exported until it has a value.

    For timestamps where 0 would read as "in 1970" (an age of 56 years on a
    dashboard) when the truth is "not known yet".
    """

    def __init__(self, name: str, documentation: str) -> None:
        self._name, self._documentation = name, documentation
        self._value: float | None = None
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def set(self, value: float) -> None:
        """Set (and from now on export) the value."""
        with self._lock:
            self._value = float(value)

    def get(self) -> float | None:
        """The value, ``None`` while unknown."""
        with self._lock:
            return self._value

    def describe(self) -> Iterable[Metric]:
        """The metric's name and help, for the registry."""
        return [GaugeMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterable[Metric]:
        """The gauge with its value, or nothing while it is unknown."""
        value = self.get()
        if value is None:
            return []
        return [GaugeMetricFamily(self._name, self._documentation, value=value)]


MESSAGES_PROCESSED = Counter(
    "cursor_messages_processed_total", "Messages handled, by outcome", ["outcome"]
)
PROCESSING_DURATION = Histogram(
    "cursor_processing_duration_seconds",
    "Wall time of handling one delivery (runs, repeats, poison messages alike)",
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

# --- operations: what the alerts and the dashboard read (deploy/) -------------

BUILD_INFO = Gauge("cursor_build_info", "Always 1; the running version as a label", ["version"])
RUNS = Counter("cursor_runs_total", "Runs finished, by status", ["status"])
RUN_LAST_SUCCESS = KnownOnlyGauge(
    "cursor_run_last_success_timestamp_seconds",
    "Unix time the last run that published its Gold (success or partial) finished"
    " (absent until one is known)",
)
RUN_DURATION = Histogram(
    "cursor_run_duration_seconds",
    "Wall time of the attempt that finished a run (published or failed), by status",
    ["status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
SOURCE_LAST_SUCCESS = Gauge(
    "cursor_source_last_success_timestamp_seconds",
    "Unix time a source last finished ok",
    ["source_id"],
)
SOURCE_DURATION = Histogram(
    "cursor_source_duration_seconds",
    "Wall time of one source",
    ["source_id"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
)
SOURCE_DOCUMENTS = Counter(
    "cursor_source_documents_total", "Documents collected, by source", ["source_id"]
)
SOURCE_RESULTS = Counter(
    "cursor_source_runs_total", "Source runs, by source and result", ["source_id", "result"]
)
SOURCE_CONSECUTIVE_FAILURES = Gauge(
    "cursor_source_consecutive_failures",
    "Runs in a row in which the source failed (0 after a success)",
    ["source_id"],
)
SOURCE_ZERO_RESULTS = Counter(
    "cursor_source_zero_results_total",
    "Source runs that ended ok with no document",
    ["source_id"],
)
RUN_DOCUMENTS = Histogram(
    "cursor_run_documents",
    "Documents in one published Gold",
    buckets=(0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
)
NOTIFICATIONS_PENDING = Gauge(
    "cursor_notifications_pending",
    "Notifications in the outbox not delivered yet (at the last scan)",
)
NOTIFICATIONS_OLDEST_PENDING_AGE = Gauge(
    "cursor_notifications_oldest_pending_age_seconds",
    "How long the oldest undelivered notification has waited (at the last scan; 0 = none)",
)
DEAD_LETTERS = Counter("cursor_dead_letters_total", "Messages this process dead-lettered")
READY = Gauge("cursor_ready", "1 when /readyz answers 200, else 0")
STOPPING = Gauge(
    "cursor_stopping",
    '1 from a stop signal until the daemon exits (/readyz answers 503 "stopping")',
)
LOOP_HEARTBEAT = Gauge(
    "cursor_loop_heartbeat_timestamp_seconds", "Unix time the consume loop last went round"
)
DEPENDENCY_UP = Gauge(
    "cursor_dependency_up",
    "1 when the last background probe of a dependency succeeded",
    ["dependency"],
)
BREAKER_STATE = Gauge(
    "cursor_breaker_state",
    "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open",
    ["dependency"],
)
SCHEDULED = Counter("cursor_schedule_enqueued_total", "Slots this process enqueued")
UNEXPECTED_ERRORS = Counter(
    "cursor_unexpected_errors_total",
    "Exceptions that are not the service's own, by where they were caught",
    ["where"],
)
RUNS_SWEPT = Counter(
    "cursor_runs_swept_total", "Runs resumed from their journal without their message"
)
