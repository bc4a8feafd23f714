"""The Gold document, schema 2.0 (architecture §7): model, validation, bytes."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .errors import InvalidGold
from .hashing import canonical_bytes, sha256_hex
from .redaction import redact_bounded

SCHEMA_VERSION = "2.0"


class EventType(enum.Enum):
    """The kinds of event the Gold carries."""

    MULTA = "MULTA"
    DECISAO = "DECISAO"
    TRANSACAO = "TRANSACAO"
    INCIDENTE = "INCIDENTE"
    NOTICIA = "NOTICIA"
    OUTRO = "OUTRO"


class EntityType(enum.Enum):
    """The kinds of entity an event mentions."""

    ORG = "ORG"
    PERSON = "PERSON"
    MONEY = "MONEY"
    CNPJ = "CNPJ"
    ASSET = "ASSET"


@attrs.frozen(kw_only=True)
class Entity:
    """An entity found in an event's text."""

    type: EntityType
    text: str
    confidence: float


@attrs.frozen(kw_only=True)
class Company:
    """The company an event is about."""

    id: str
    name: str
    cnpj: str | None = None
    player_id: str | None = None


@attrs.frozen(kw_only=True)
class GoldEvent:
    """One consolidated event."""

    event_id: str
    title: str
    summary: str
    event_type: EventType
    company: Company | None
    amount: float | None
    date: str | None
    source: str
    source_url: str | None
    confidence_score: float
    is_critical: bool
    entities: tuple[Entity, ...] = ()
    tags: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class GoldErrorEntry:
    """
    One entry of the Gold's ``errors`` list (a record of a failure, not an exception).

    ``error_message`` is redacted and bounded when the entry is made
    (:func:`~.redaction.redact_bounded`), whoever made it: the Cursor, a
    Core Gold read with :func:`parse_gold`, a stored Gold read again.
    """

    source_id: str
    error_type: str
    error_message: str = attrs.field(converter=redact_bounded)
    timestamp: str


@attrs.frozen(kw_only=True)
class GoldMetadata:
    """The Gold header."""

    run_id: str
    generated_at: str
    date: str
    sources_processed: int
    documents_count: int
    events_count: int
    version: str = SCHEMA_VERSION


@attrs.frozen(kw_only=True)
class GoldDocument:
    """A whole Gold document."""

    metadata: GoldMetadata
    events: tuple[GoldEvent, ...] = ()
    errors: tuple[GoldErrorEntry, ...] = ()


@attrs.frozen(kw_only=True)
class SerializedGold:
    """Gold bytes exactly as stored, with their SHA-256."""

    document: GoldDocument
    body: bytes = attrs.field(repr=False)
    sha256: str

    @property
    def size(self) -> int:
        """Length of the stored bytes."""
        return len(self.body)


def isoformat_z(moment: dt.datetime) -> str:
    """Render an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, seconds)."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_gold(
    *,
    run_id: str,
    date: dt.date,
    generated_at: dt.datetime,
    sources_processed: int,
    documents_count: int,
    events: Iterable[GoldEvent],
    errors: Iterable[GoldErrorEntry],
) -> GoldDocument:
    """Assemble a Gold document; events and errors are put in a stable order."""
    ordered_events = tuple(sorted(events, key=lambda e: (e.source, e.event_id)))
    ordered_errors = tuple(sorted(errors, key=lambda e: (e.source_id, e.error_type, e.timestamp)))
    return GoldDocument(
        metadata=GoldMetadata(
            run_id=run_id,
            generated_at=isoformat_z(generated_at),
            date=date.isoformat(),
            sources_processed=sources_processed,
            documents_count=documents_count,
            events_count=len(ordered_events),
        ),
        events=ordered_events,
        errors=ordered_errors,
    )


def merge_errors(gold: GoldDocument, extra: Sequence[GoldErrorEntry]) -> GoldDocument:
    """Add *extra* errors not already present (same source and type)."""
    seen = {(e.source_id, e.error_type, e.error_message) for e in gold.errors}
    added = [e for e in extra if (e.source_id, e.error_type, e.error_message) not in seen]
    if not added:
        return gold
    errors = tuple(sorted((*gold.errors, *added), key=lambda e: (e.source_id, e.error_type)))
    return attrs.evolve(gold, errors=errors)


def gold_to_dict(gold: GoldDocument) -> dict[str, Any]:
    """Unstructure a Gold document into plain JSON data."""
    from .codec import converter

    data: dict[str, Any] = converter.unstructure(gold)
    return data


def serialize_gold(gold: GoldDocument) -> SerializedGold:
    """
    Serialize *gold* deterministically and hash the exact bytes.

    Raises:
        InvalidGold: if a number is NaN or infinite.
    """
    try:
        body = canonical_bytes(gold_to_dict(gold))
    except ValueError as exc:
        raise InvalidGold(f"Gold cannot be serialized: {exc}") from None
    return SerializedGold(document=gold, body=body, sha256=sha256_hex(body))


def parse_gold(data: object) -> GoldDocument:
    """
    Validate plain JSON data as a Gold 2.0 document.

    Raises:
        InvalidGold: with every problem found, when *data* is not Gold 2.0.
    """
    import cattrs

    from .codec import strict_converter

    if not isinstance(data, Mapping):
        raise InvalidGold(f"Gold must be a JSON object, got {type(data).__name__}")
    try:
        gold = strict_converter.structure(data, GoldDocument)
    except cattrs.BaseValidationError as exc:
        reasons = "; ".join(cattrs.transform_error(exc, path="gold"))
        raise InvalidGold(f"invalid Gold document: {reasons}") from None
    problems = list(_semantic_problems(gold))
    if problems:
        raise InvalidGold("invalid Gold document: " + "; ".join(problems))
    return gold


def _semantic_problems(gold: GoldDocument) -> Iterable[str]:
    if gold.metadata.version != SCHEMA_VERSION:
        yield f"metadata.version must be {SCHEMA_VERSION!r}, got {gold.metadata.version!r}"
    if gold.metadata.events_count != len(gold.events):
        yield (
            f"metadata.events_count is {gold.metadata.events_count} "
            f"but there are {len(gold.events)} events"
        )
    for index, event in enumerate(gold.events):
        numbers = [event.confidence_score, *(e.confidence for e in event.entities)]
        if event.amount is not None:
            numbers.append(event.amount)
        if any(not math.isfinite(n) for n in numbers):
            yield f"events[{index}] has a NaN or infinite number"
