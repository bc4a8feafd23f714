"""The ingest service: both flows of architecture §5, driven only through ports.

Nothing here logs or reads a clock: progress goes to an ``on_event(name,
data)`` callback the entry points turn into log lines and metrics, and the
wall and monotonic clocks are injected.

- :mod:`.model`: policy, the delivery parsed once (:class:`Job`), results, errors.
- :mod:`.journals`: run journals in the store, leased with conditional writes.
- :mod:`.heartbeat`: the lease (and the delivery's visibility) renewed while a run works.
- :mod:`.sources`: the run's sources in parallel, bounded, each within its timeout.
- :mod:`.publish`: the Gold create-only, then the notification into the outbox.
- :mod:`.outbox`: notifications waiting in the store until delivered.
- :mod:`.flows`: the daily ingest and reprocess steps.
- :mod:`.runner`: one run worked under its heartbeat; failures made final.
- :mod:`.settle`: a delivery handled and settled on the queue.
- :mod:`.foreground`: ``ingest`` / ``reprocess`` without a queue.
- :mod:`.sweep`: runs in flight found from their journals and resumed.
"""

from .foreground import run_message
from .journals import JournalStore, parse_journal, read_journal
from .model import (
    AllSourcesFailed,
    Clock,
    EventSink,
    HandleResult,
    IngestPolicy,
    Job,
    LeaseHeld,
    LeaseLost,
    Monotonic,
    Outcome,
    Poison,
    RunAborted,
    RunCrashed,
    RunFailed,
    RunSummary,
    UnreadableJournal,
    error_text,
    read_job,
    summary_of,
    utc_now,
)
from .outbox import Outbox, OutboxEntry, OutboxPolicy, deliver, deliver_due, mirror, outbox_key
from .runner import RunControl
from .settle import handle_delivery, settle_crash
from .sweep import Sweeper, resume_run

__all__ = [
    "AllSourcesFailed",
    "Clock",
    "EventSink",
    "HandleResult",
    "IngestPolicy",
    "Job",
    "JournalStore",
    "LeaseHeld",
    "LeaseLost",
    "Monotonic",
    "Outbox",
    "OutboxEntry",
    "OutboxPolicy",
    "Outcome",
    "Poison",
    "RunAborted",
    "RunControl",
    "RunCrashed",
    "RunFailed",
    "RunSummary",
    "Sweeper",
    "UnreadableJournal",
    "deliver",
    "deliver_due",
    "error_text",
    "handle_delivery",
    "mirror",
    "outbox_key",
    "parse_journal",
    "read_job",
    "read_journal",
    "resume_run",
    "run_message",
    "settle_crash",
    "summary_of",
    "utc_now",
]
