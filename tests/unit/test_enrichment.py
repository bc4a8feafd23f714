"""Rule-based enrichment of the local executor: event types, entities, amounts, ids."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlasreg_cursor.adapters.local.enrichment import (
    EVENT_RULES,
    cnpj_valid,
    company_name_before,
    enrich,
    find_cnpjs,
    find_money,
    normalize_date,
    parse_brl,
)
from atlasreg_cursor.domain.documents import Document
from atlasreg_cursor.domain.gold import (
    EntityType,
    EventType,
    build_gold,
    parse_gold,
    serialize_gold,
)


def doc(title: str, summary: str = "", **kwargs: object) -> Document:
    """A document of source ``s1`` with the given text."""
    fields: dict[str, object] = {
        "document_id": "d1",
        "source_id": "s1",
        "url": "https://example.com/a",
    }
    fields.update(kwargs)
    return Document(title=title, summary=summary, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("title", "summary", "expected"),
    [
        ("ANEEL aplica multa à distribuidora", "", EventType.MULTA),
        ("Auto de Infração lavrado contra geradora", "", EventType.MULTA),
        ("AUTO DE INFRACAO sem acento", "", EventType.MULTA),
        ("Penalidade por atraso", "", EventType.MULTA),
        ("Despacho autoriza operação", "", EventType.DECISAO),
        ("Resolução normativa publicada", "", EventType.DECISAO),
        ("Decisão da diretoria", "", EventType.DECISAO),
        ("Deliberação do colegiado", "", EventType.DECISAO),
        ("Leilão de energia nova", "", EventType.TRANSACAO),
        ("Aquisição de transmissora", "", EventType.TRANSACAO),
        ("Contrato assinado", "", EventType.TRANSACAO),
        ("Venda de participação", "", EventType.TRANSACAO),
        ("Ocorrência na rede básica", "", EventType.INCIDENTE),
        ("Desligamento de linha", "", EventType.INCIDENTE),
        ("Falha em transformador", "", EventType.INCIDENTE),
        ("Apagão no Nordeste", "", EventType.INCIDENTE),
        ("Boletim mensal de geração", "", EventType.NOTICIA),
        ("Consulta pública aberta", "", EventType.NOTICIA),
        ("Resultado", "A decisão aplica multa de R$ 10 mil", EventType.MULTA),
        ("Contrato suspenso", "após desligamento", EventType.INCIDENTE),
    ],
)
def test_event_type_rules(title: str, summary: str, expected: EventType) -> None:
    """Keywords pick the event type, accent- and case-insensitively, by precedence."""
    event = enrich(doc(title, summary), run_id="run_000000000000")

    assert expected == event.event_type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("multa de R$ 1,5 milhão", 1_500_000.0),
        ("multa de R$ 250 mil", 250_000.0),
        ("soma R$ 1.234.567,89 no total", 1_234_567.89),
        ("investimento de R$ 2 bilhões", 2_000_000_000.0),
        ("R$ 3 bi em obras", 3_000_000_000.0),
        ("R$ 7,2 mi em multas", 7_200_000.0),
        ("R$ 0,45 por ação", 0.45),
        ("R$1.200", 1_200.0),
        ("R$ 12", 12.0),
        ("R$ 1.5 milhão", 1_500_000.0),
        ("R$ 3 minutos", 3.0),
        ("primeiro R$ 10 mil, depois R$ 20 mil", 10_000.0),
        ("sem valores", None),
        ("300 mil consumidores", None),
    ],
)
def test_amount_is_the_first_money(text: str, expected: float | None) -> None:
    """The amount is the value of the first ``R$`` mention."""
    event = enrich(doc("Aviso", text), run_id="run_000000000000")

    assert expected == event.amount


@pytest.mark.parametrize(
    ("number", "multiplier", "expected"),
    [
        ("1,5", "milhão", 1_500_000.0),
        ("1,5", "milhoes", 1_500_000.0),
        ("250", "mil", 250_000.0),
        ("1.234.567,89", None, 1_234_567.89),
        ("2", "Bilhões", 2_000_000_000.0),
        ("1.23.4", None, None),
        ("1,2,3", None, None),
        ("12.34,5", None, None),
    ],
)
def test_parse_brl(number: str, multiplier: str | None, expected: float | None) -> None:
    """Brazilian number formats with word multipliers parse to floats."""
    assert expected == parse_brl(number, multiplier)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=99))
def test_parse_brl_round_trips_formatted_numbers(whole: int, cents: int) -> None:
    """Any amount written the Brazilian way (``1.234,56``) parses back."""
    written = f"{whole:,}".replace(",", ".") + f",{cents:02d}"
    parsed = parse_brl(written)

    assert parsed is not None
    assert math.isclose(whole + cents / 100, parsed, rel_tol=1e-12)


def test_fine_with_company_and_entities() -> None:
    """A fine names its company from the text, with CNPJ, MONEY and ORG entities."""
    event = enrich(
        doc(
            "ANEEL aplica multa de R$ 1,5 milhão",
            "Auto de infração contra a Transmissora Paulista S.A. (CNPJ 12.345.678/0001-95).",
            player_id="aneel",
            tags=("multa",),
        ),
        run_id="run_000000000000",
    )

    assert EventType.MULTA == event.event_type
    assert 1_500_000.0 == event.amount
    assert event.is_critical
    assert event.company is not None
    assert "Transmissora Paulista S.A." == event.company.name
    assert "12.345.678/0001-95" == event.company.cnpj
    assert "aneel" == event.company.player_id
    assert {
        (EntityType.CNPJ, "12.345.678/0001-95"),
        (EntityType.MONEY, "R$ 1,5 milhão"),
        (EntityType.ORG, "Transmissora Paulista S.A."),
    } == {(e.type, e.text) for e in event.entities}
    assert ("multa",) == event.tags
    assert 0.5 < event.confidence_score <= 0.99


@pytest.mark.parametrize(
    ("event_text", "critical"),
    [
        ("multa de R$ 1 milhão", True),
        ("multa de R$ 999.999,99", False),
        ("multa sem valor", False),
        ("desligamento na subestação", True),
        ("leilão de R$ 5 bilhões", False),
    ],
)
def test_is_critical(event_text: str, critical: bool) -> None:
    """Critical: a fine of at least R$ 1 million, or any incident."""
    assert critical == enrich(doc(event_text), run_id="run_000000000000").is_critical


def test_company_name_falls_back_to_the_cnpj() -> None:
    """Without a name before it, the company is named by its CNPJ."""
    event = enrich(doc("Multa", "inscrita sob 98.765.432/0001-98"), run_id="run_000000000000")

    assert event.company is not None
    assert "98.765.432/0001-98" == event.company.name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("à Geradora Serra Azul Ltda., CNPJ 98.765.432/0001-98", "Geradora Serra Azul Ltda."),
        ("A Ventos do Sul Energia S.A., CNPJ 55666777000181", "Ventos do Sul Energia S.A."),
        ("no Maranhão. Energia Norte S/A (CNPJ 11.222.333/0001-81)", "Energia Norte S/A"),
        ("pela empresa, inscrita no CNPJ 11.222.333/0001-81", None),
    ],
)
def test_company_name_before(text: str, expected: str | None) -> None:
    """The name is the capitalised words right before the CNPJ."""
    position = find_cnpjs(text)[0][2]

    assert expected == company_name_before(text, position)


def test_cnpjs_formatted_and_bare() -> None:
    """Formatted CNPJs always count; bare digits only with valid check digits."""
    found = find_cnpjs("12.345.678/0001-90 e 55666777000181 e 12345678901234")

    assert [("12.345.678/0001-90", 0.8), ("55.666.777/0001-81", 0.9)] == [
        (c, conf) for c, conf, _ in found
    ]
    assert cnpj_valid("11222333000181")
    assert not cnpj_valid("11111111111111")


def test_same_input_same_event_in_every_run() -> None:
    """Ids depend on the source and URL only, never on the run."""
    first = enrich(doc("Multa", "R$ 2 mil, CNPJ 11.222.333/0001-81"), run_id="run_aaaaaaaaaaaa")
    second = enrich(doc("Multa", "R$ 2 mil, CNPJ 11.222.333/0001-81"), run_id="run_bbbbbbbbbbbb")
    other_source = enrich(doc("Multa", "R$ 2 mil", source_id="s2"), run_id="run_aaaaaaaaaaaa")

    assert first == second
    assert first.event_id != other_source.event_id


def test_event_id_uses_the_title_without_url() -> None:
    """Without a URL the title identifies the event."""
    a = enrich(doc("Um título", url=None), run_id="run_000000000000")
    b = enrich(doc("Outro título", url=None), run_id="run_000000000000")

    assert a.event_id != b.event_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-20T10:00:00-03:00", "2026-11-20"),
        ("2026-11-20", "2026-11-20"),
        ("21/11/2026", "2026-11-21"),
        ("1/2/2026", "2026-02-01"),
        ("31/02/2026", "31/02/2026"),
        ("ontem", "ontem"),
        ("  ", None),
        (None, None),
    ],
)
def test_normalize_date(raw: str | None, expected: str | None) -> None:
    """ISO and Brazilian dates become ``YYYY-MM-DD``; the rest is kept as given."""
    assert expected == normalize_date(raw)


def test_rules_table_is_folded() -> None:
    """Rule keywords are written folded (lower case, no accents), as they are matched."""
    from atlasreg_cursor.domain.sources import fold_text

    assert all(k == fold_text(k) for rule in EVENT_RULES for k in rule.keywords)


@given(
    title=st.text(max_size=300),
    summary=st.text(max_size=600),
    url=st.none() | st.text(max_size=50),
    date=st.none() | st.text(max_size=30),
)
def test_enrich_never_raises_and_gives_valid_gold(
    title: str, summary: str, url: str | None, date: str | None
) -> None:
    """Any text enriches into an event that makes valid, serializable Gold."""
    event = enrich(
        Document(document_id="d", source_id="s", title=title, summary=summary, url=url, date=date),
        run_id="run_000000000000",
    )
    gold = build_gold(
        run_id="run_000000000000",
        date=dt.date(2026, 11, 24),
        generated_at=dt.datetime(2026, 11, 24, tzinfo=dt.UTC),
        sources_processed=1,
        documents_count=1,
        events=[event],
        errors=[],
    )

    assert event.amount is None or math.isfinite(event.amount)
    assert 0.0 < event.confidence_score <= 1.0
    assert gold == parse_gold(json.loads(serialize_gold(gold).body))


@given(st.text(alphabet="R$ 0123456789.,milhõesbiã", max_size=80))
def test_find_money_on_money_like_text(text: str) -> None:
    """Money-like noise never raises and yields only finite values."""
    assert all(math.isfinite(value) for _, value in find_money(text))
