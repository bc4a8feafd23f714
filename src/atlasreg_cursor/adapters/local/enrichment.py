"""Rule-based enrichment of the local executor: a Document becomes a GoldEvent.

The rules (architecture §2a), applied to the document's title and summary:

- ``event_type``: the first row of ``EVENT_RULES`` with a keyword in the text
  (accent- and case-insensitive, matched at the start of a word), else
  ``NOTICIA``. The order is the precedence: a fine announced by a decision is
  a ``MULTA``; an outage in a contract story is an ``INCIDENTE``.
- entities: ``CNPJ`` (``12.345.678/0001-90``, or 14 bare digits whose check
  digits are valid), ``MONEY`` (``R$ 1,5 milhão``, ``R$ 250 mil``,
  ``R$ 1.234.567,89``, ``R$ 2 bilhões``, ``R$ 3 mi``) and ``ORG`` (the company
  name written just before a CNPJ, e.g. ``Geradora Serra Azul Ltda., CNPJ …``).
- ``amount``: the value of the first ``MONEY`` (``R$ 1,5 milhão`` → 1500000.0).
- ``company``: from the first CNPJ; its name from the text when found, else the
  CNPJ; ``player_id`` from the document; id = uuid5 over the CNPJ digits.
- ``event_id``: uuid5 over the source id and the URL (the title when there is
  no URL) — never the run, so the same input gives the same Gold.
- ``confidence_score``: the rule's base score plus 0.03 per further keyword
  of the rule found, at most 0.99; 0.5 for ``NOTICIA``.
- ``is_critical``: a ``MULTA`` of at least R$ 1,000,000, or any ``INCIDENTE``.
- ``tags``: the source keywords the document matched (``Document.tags``).

Pure: no I/O and no settings.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Iterable

import attrs

from atlasreg_cursor.domain.documents import Document
from atlasreg_cursor.domain.gold import Company, Entity, EntityType, EventType, GoldEvent
from atlasreg_cursor.domain.sources import fold_text


@attrs.frozen
class EventRule:
    """Keywords (folded: lower case, no accents) that make an event type."""

    event_type: EventType
    keywords: tuple[str, ...]
    confidence: float


EVENT_RULES: tuple[EventRule, ...] = (
    EventRule(
        EventType.MULTA,
        ("multa", "auto de infracao", "autos de infracao", "penalidade", "sancao"),
        0.9,
    ),
    EventRule(
        EventType.INCIDENTE,
        ("ocorrencia", "desligamento", "falha", "apagao", "blecaute", "interrupcao"),
        0.85,
    ),
    EventRule(
        EventType.TRANSACAO,
        ("leilao", "leiloes", "aquisicao", "aquisicoes", "contrato", "venda", "compra de"),
        0.8,
    ),
    EventRule(
        EventType.DECISAO,
        ("despacho", "resolucao", "resolucoes", "decisao", "decisoes", "deliberacao"),
        0.8,
    ),
)
DEFAULT_EVENT_TYPE = EventType.NOTICIA
DEFAULT_CONFIDENCE = 0.5
KEYWORD_BONUS = 0.03
MAX_CONFIDENCE = 0.99
CRITICAL_FINE = 1_000_000.0

MULTIPLIERS: tuple[tuple[str, float], ...] = (
    ("bilhoes", 1e9),
    ("bilhao", 1e9),
    ("bi", 1e9),
    ("milhoes", 1e6),
    ("milhao", 1e6),
    ("mi", 1e6),
    ("mil", 1e3),
)

EVENT_NAMESPACE = uuid.UUID("6f1c8a52-3d0e-5b7a-9c41-2e8d5f0a7b13")
COMPANY_NAMESPACE = uuid.UUID("0b9e4c7d-8a21-5f36-b4d2-7c15e9a03f68")

_CNPJ_FORMATTED = re.compile(r"(?<!\d)(\d{2})\.(\d{3})\.(\d{3})/(\d{4})-(\d{2})(?!\d)")
_CNPJ_BARE = re.compile(r"(?<!\d)\d{14}(?!\d)")
_MONEY = re.compile(
    r"R\$\s?(\d(?:[\d.,]{0,40}\d)?)"
    r"(?:\s?(bilh(?:ões|oes|ão|ao)|milh(?:ões|oes|ão|ao)|mil|bi|mi)(?![^\W\d_]))?",
    re.IGNORECASE,
)
_DESIGNATORS = frozenset({"s.a.", "s.a", "s/a", "sa", "ltda.", "ltda", "eireli", "me", "s.a.,"})
_CONNECTORS = frozenset({"de", "do", "da", "dos", "das", "e", "&"})
_LEADING_ARTICLES = frozenset({"a", "o", "as", "os", "à", "ao", "às", "aos", "e", "&"})
_NAME_TAIL = re.compile(
    r"(?:\s|[(,:\u2013-]|\bCNPJ\b|\bn[º°o]\.?|\binscrit[ao]\s+(?:no|sob\s+o)\b)*$", re.IGNORECASE
)
_MAX_NAME_WORDS = 8


def enrich(document: Document, *, run_id: str) -> GoldEvent:
    """
    Turn one document into a Gold event by the module's rules.

    Args:
        document: a collected document with its text fields.
        run_id: the run the document belongs to; deliberately not part of any
            id, so every run makes the same event of the same document.

    Returns:
        The event; never raises for any text.
    """
    del run_id  # ids are run-independent by design
    text = f"{document.title}\n{document.summary}"
    folded = fold_text(text)
    event_type, confidence = classify(folded)
    money = find_money(text)
    amount = money[0][1] if money else None
    cnpjs = find_cnpjs(text)
    company = None
    entities: list[Entity] = []
    for cnpj, confidence_cnpj, _start in cnpjs:
        entities.append(Entity(type=EntityType.CNPJ, text=cnpj, confidence=confidence_cnpj))
    for shown, _value in money:
        entities.append(Entity(type=EntityType.MONEY, text=shown, confidence=0.95))
    if cnpjs:
        cnpj, _conf, start = cnpjs[0]
        name = company_name_before(text, start)
        if name:
            entities.append(Entity(type=EntityType.ORG, text=name, confidence=0.7))
        company = Company(
            id=str(uuid.uuid5(COMPANY_NAMESPACE, _digits(cnpj))),
            name=name or cnpj,
            cnpj=cnpj,
            player_id=document.player_id,
        )
    critical = event_type is EventType.INCIDENTE or (
        event_type is EventType.MULTA and amount is not None and amount >= CRITICAL_FINE
    )
    return GoldEvent(
        event_id=event_id(document.source_id, document.url, document.title),
        title=document.title.strip() or (document.url or ""),
        summary=document.summary.strip(),
        event_type=event_type,
        company=company,
        amount=amount,
        date=normalize_date(document.date),
        source=document.source_id,
        source_url=document.url,
        confidence_score=confidence,
        is_critical=critical,
        entities=tuple(_unique(entities)),
        tags=tuple(document.tags),
    )


def classify(folded: str) -> tuple[EventType, float]:
    """
    Return the event type and confidence for folded text (see ``EVENT_RULES``).

    Args:
        folded: text already passed through ``fold_text``.
    """
    for rule in EVENT_RULES:
        hits = sum(1 for keyword in rule.keywords if _has_word_prefix(folded, keyword))
        if hits:
            score = min(MAX_CONFIDENCE, rule.confidence + KEYWORD_BONUS * (hits - 1))
            return rule.event_type, round(score, 2)
    return DEFAULT_EVENT_TYPE, DEFAULT_CONFIDENCE


def _has_word_prefix(folded: str, keyword: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(keyword), folded) is not None


def find_money(text: str) -> list[tuple[str, float]]:
    """
    Return every ``R$`` amount in *text* as (text as written, value), in order.

    Amounts that do not parse or are not finite are left out.
    """
    found = []
    for match in _MONEY.finditer(text):
        value = parse_brl(match.group(1), match.group(2))
        if value is not None:
            found.append((match.group(0).strip(), value))
    return found


def parse_brl(number: str, multiplier: str | None = None) -> float | None:
    """
    Parse a Brazilian-formatted number with an optional word multiplier.

    ``"1,5", "milhão"`` → 1500000.0; ``"1.234.567,89"`` → 1234567.89;
    ``"250", "mil"`` → 250000.0; ``"1.5"`` → 1.5 (a lone dot before one or
    two digits is a decimal point). Returns ``None`` when it does not parse.
    """
    if "," in number:
        whole, _, fraction = number.rpartition(",")
        if "," in whole or not fraction.isdigit():
            return None
        groups = whole.split(".")
        if any(not g.isdigit() for g in groups) or any(len(g) != 3 for g in groups[1:]):
            return None
        plain = "".join(groups) + "." + fraction
    elif "." in number:
        groups = number.split(".")
        if any(not g.isdigit() for g in groups):
            return None
        if len(groups) == 2 and len(groups[1]) in (1, 2):
            plain = number
        elif all(len(g) == 3 for g in groups[1:]):
            plain = "".join(groups)
        else:
            return None
    elif number.isdigit():
        plain = number
    else:
        return None
    value = float(plain) * _multiplier(multiplier)
    return value if math.isfinite(value) else None


def _multiplier(word: str | None) -> float:
    if not word:
        return 1.0
    folded = fold_text(word)
    for name, factor in MULTIPLIERS:
        if folded == name:
            return factor
    return 1.0


def find_cnpjs(text: str) -> list[tuple[str, float, int]]:
    """
    Return the CNPJs in *text* as (formatted CNPJ, confidence, position).

    Formatted CNPJs are taken as written (confidence 0.99 with valid check
    digits, 0.8 without); 14 bare digits only when the check digits are valid.
    """
    found: dict[str, tuple[str, float, int]] = {}
    for match in _CNPJ_FORMATTED.finditer(text):
        digits = "".join(match.groups())
        confidence = 0.99 if cnpj_valid(digits) else 0.8
        found.setdefault(digits, (format_cnpj(digits), confidence, match.start()))
    for match in _CNPJ_BARE.finditer(text):
        digits = match.group(0)
        if cnpj_valid(digits):
            found.setdefault(digits, (format_cnpj(digits), 0.9, match.start()))
    return sorted(found.values(), key=lambda item: item[2])


def cnpj_valid(digits: str) -> bool:
    """Tell whether 14 digits carry valid CNPJ check digits."""
    if len(digits) != 14 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    numbers = [int(c) for c in digits]
    weights = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    for position in (12, 13):
        total = sum(n * w for n, w in zip(numbers[:position], weights, strict=False))
        remainder = total % 11
        check = 0 if remainder < 2 else 11 - remainder
        if numbers[position] != check:
            return False
        weights = [6, *weights]
    return True


def format_cnpj(digits: str) -> str:
    """Format 14 digits as ``12.345.678/0001-90``."""
    return f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}/{digits[8:12]}-{digits[12:]}"


def company_name_before(text: str, position: int) -> str | None:
    """
    Return the company name written just before *position* (a CNPJ), if any.

    Takes the capitalised words (with ``de``/``do``/``da``… and ``S.A.``,
    ``Ltda.``) that end right before ``(CNPJ``, ``, CNPJ`` or ``CNPJ nº``.
    """
    prefix = text[max(0, position - 160) : position]
    tail = _NAME_TAIL.search(prefix)
    if tail is not None:
        prefix = prefix[: tail.start()]
    words = prefix.split()
    name: list[str] = []
    for word in reversed(words):
        bare = word.rstrip(",;:")
        lowered = bare.casefold()
        if bare != word and name:
            break
        known = lowered in _DESIGNATORS or lowered in _CONNECTORS
        capitalised = bare[:1].isupper() and not (bare.endswith(".") and name)
        if not (known or capitalised):
            break
        name.append(bare)
        if len(name) >= _MAX_NAME_WORDS:
            break
    name.reverse()
    while name and (name[0].casefold() in _LEADING_ARTICLES or name[0].casefold() in _CONNECTORS):
        name.pop(0)
    if not any(w[:1].isupper() and w.casefold() not in _DESIGNATORS for w in name):
        return None
    return " ".join(name)


def event_id(source_id: str, url: str | None, title: str) -> str:
    """Return the run-independent event id of a document."""
    key = f"{source_id}\nurl\n{url}" if url else f"{source_id}\ntitle\n{title.strip()}"
    return str(uuid.uuid5(EVENT_NAMESPACE, key))


def normalize_date(value: str | None) -> str | None:
    """
    Return *value* as ``YYYY-MM-DD`` when it starts with an ISO date or is
    ``DD/MM/YYYY``; otherwise the stripped value (or ``None`` when empty).
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    iso = re.match(r"^(\d{4})-(\d{2})-(\d{2})", value)
    brazilian = re.match(r"^(\d{1,2})/(\d{1,2})/(\d{4})\b", value)
    try:
        if iso:
            return dt.date(int(iso[1]), int(iso[2]), int(iso[3])).isoformat()
        if brazilian:
            return dt.date(int(brazilian[3]), int(brazilian[2]), int(brazilian[1])).isoformat()
    except ValueError:
        return value
    return value


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _unique(entities: Iterable[Entity]) -> list[Entity]:
    seen: set[tuple[EntityType, str]] = set()
    kept = []
    for entity in entities:
        if (entity.type, entity.text) not in seen:
            seen.add((entity.type, entity.text))
            kept.append(entity)
    return kept
