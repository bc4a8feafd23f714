"""Hypothesis strategies for the domain types."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from atlasreg_cursor.domain.gold import (
    Company,
    Entity,
    EntityType,
    EventType,
    GoldErrorEntry,
    GoldEvent,
    build_gold,
)
from atlasreg_cursor.domain.messages import MessageType, QueueMessage

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
dates = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31))
aware_datetimes = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(lambda d: d.replace(microsecond=0))
ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)

messages = st.builds(
    QueueMessage,
    type=st.sampled_from(MessageType),
    date=dates,
    payload=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "sources"), json_values, max_size=3
    )
    | st.builds(lambda s: {"sources": s}, st.lists(ids, max_size=3)),
    timestamp=st.none() | aware_datetimes,
    message_id=st.none() | ids,
)

finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
entities = st.builds(
    Entity, type=st.sampled_from(EntityType), text=st.text(max_size=20), confidence=finite
)
companies = st.builds(
    Company,
    id=st.uuids().map(str),
    name=st.text(max_size=20),
    cnpj=st.none() | st.text(max_size=18),
    player_id=st.none() | ids,
)
events = st.builds(
    GoldEvent,
    event_id=st.uuids().map(str),
    title=st.text(max_size=40),
    summary=st.text(max_size=60),
    event_type=st.sampled_from(EventType),
    company=st.none() | companies,
    amount=st.none() | finite,
    date=st.none() | dates.map(dt.date.isoformat),
    source=ids,
    source_url=st.none() | st.just("https://example.com/x"),
    confidence_score=finite,
    is_critical=st.booleans(),
    entities=st.lists(entities, max_size=3).map(tuple),
    tags=st.lists(st.text(max_size=10), max_size=3).map(tuple),
)
gold_errors = st.builds(
    GoldErrorEntry,
    source_id=ids,
    error_type=st.sampled_from(["timeout", "http_error", "spider_error"]),
    error_message=st.text(max_size=40),
    timestamp=aware_datetimes.map(lambda d: d.isoformat()),
)
golds = st.builds(
    lambda run, date, at, evs, errs: build_gold(
        run_id=run,
        date=date,
        generated_at=at,
        sources_processed=len({e.source for e in evs}),
        documents_count=len(evs),
        events=evs,
        errors=errs,
    ),
    st.from_regex(r"run_[0-9a-f]{12}", fullmatch=True),
    dates,
    aware_datetimes,
    st.lists(events, max_size=5),
    st.lists(gold_errors, max_size=3),
)
