"""The bundled sample site, the demo watchlist over it, and what that yields.

``start_sample_site()`` serves the site on loopback; ``demo_watchlist(url)``
is a watchlist (architecture §2a) over it; ``expected_demo_outcome()`` states exactly
which documents and events the local executor makes of that watchlist, so
the demo and the tests can check exact numbers. Reads no settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .server import SampleSite, start_sample_site

__all__ = [
    "DEMO_SOURCE_IDS",
    "DemoOutcome",
    "SampleSite",
    "SourceExpectation",
    "demo_watchlist",
    "expected_demo_outcome",
    "start_sample_site",
]

NEWSROOM_ID = "portal_noticias"
API_ID = "cvm_avisos"
CSV_ID = "ons_ocorrencias"
DAG_ID = "sigel_daily"
DISABLED_ID = "portal_arquivo"
DEMO_SOURCE_IDS = (NEWSROOM_ID, API_ID, CSV_ID, DAG_ID, DISABLED_ID)


def demo_watchlist(base_url: str) -> dict[str, Any]:
    """
    Return a watchlist (architecture §2a) over the sample site at *base_url*.

    One source per local handler, one ``AIRFLOW_DAG`` source that has no
    local meaning (it fails with ``handler_not_available``) and one disabled
    source.
    """
    base = base_url.rstrip("/")
    return {
        "sources": [
            {
                "id": NEWSROOM_ID,
                "name": "Portal Setorial - Sala de imprensa",
                "handler_id": "SCRAPY_NEWSROOM_PLAYER",
                "url_feed": f"{base}/noticias/",
                "enabled": True,
                "schedule": "0 6 * * *",
                "player_id": "aneel",
                "timeout_seconds": 120,
                "keywords": [
                    "multa",
                    "auto de infração",
                    "leilão",
                    "transmissão",
                    "desligamento",
                    "resolução",
                    "contrato",
                ],
                "selectors": {
                    "item": "article",
                    "title": "h2 a::text",
                    "url": "h2 a::attr(href)",
                    "date": "time::attr(datetime)",
                    "summary": "p.description::text",
                    "next_page": "a.next::attr(href)",
                },
            },
            {
                "id": API_ID,
                "name": "CVM - Avisos ao mercado",
                "handler_id": "SCRAPY_CVM_API",
                "url_feed": f"{base}/api/avisos",
                "enabled": True,
                "player_id": "cvm",
                "timeout_seconds": 120,
                "api": {
                    "items_path": "data.items",
                    "fields": {
                        "id": "id",
                        "title": "titulo",
                        "url": "link",
                        "date": "data",
                        "summary": "resumo",
                    },
                },
            },
            {
                "id": CSV_ID,
                "name": "ONS - Ocorrências na rede",
                "handler_id": "DOWNLOAD_CSV",
                "url_feed": f"{base}/dados/ocorrencias.csv",
                "enabled": True,
                "player_id": "ons",
                "timeout_seconds": 60,
                "keywords": ["desligamento", "falha", "apagão", "ocorrência"],
                "csv": {
                    "delimiter": ";",
                    "encoding": "utf-8",
                    "fields": {"title": "descricao", "url": "link", "date": "data"},
                },
            },
            {
                "id": DAG_ID,
                "name": "SIGEL - carga diária",
                "handler_id": "AIRFLOW_DAG",
                "dag_id": "sigel_daily",
                "enabled": True,
            },
            {
                "id": DISABLED_ID,
                "name": "Portal Setorial - Arquivo",
                "handler_id": "SCRAPY_NEWSROOM_PLAYER",
                "url_feed": f"{base}/noticias/?page=3",
                "enabled": False,
                "selectors": {"item": "article", "title": "h2 a::text"},
            },
        ],
        "global_settings": {
            "max_concurrent_sources": 3,
            "processing_timeout_minutes": 5,
            "alert_on_zero_results": True,
            "alert_recipients": ["ops@example.com"],
        },
    }


@attrs.frozen(kw_only=True)
class SourceExpectation:
    """What one demo source yields (``error_type`` set when it fails)."""

    items: int = 0
    documents: int = 0
    events: Mapping[str, int] = attrs.field(factory=dict)
    critical: int = 0
    error_type: str | None = None


@attrs.frozen(kw_only=True)
class DemoOutcome:
    """What the whole demo watchlist yields in local mode."""

    sources: Mapping[str, SourceExpectation]
    documents_count: int
    events_count: int
    errors_count: int
    status: str

    def events_by_type(self) -> dict[str, int]:
        """Event counts per ``event_type`` over every source."""
        total: dict[str, int] = {}
        for expectation in self.sources.values():
            for kind, count in expectation.events.items():
                total[kind] = total.get(kind, 0) + count
        return total


def expected_demo_outcome() -> DemoOutcome:
    """
    Return exactly what the local executor makes of :func:`demo_watchlist`.

    The newsroom lists 11 articles over three pages, 8 of which match its
    keywords; the API lists 5 notices (no keyword filter); the CSV has 4 rows,
    3 of which match; the ``AIRFLOW_DAG`` source fails; the disabled source
    is not run.
    """
    sources = {
        NEWSROOM_ID: SourceExpectation(
            items=11,
            documents=8,
            events={"MULTA": 3, "TRANSACAO": 2, "DECISAO": 1, "INCIDENTE": 1, "NOTICIA": 1},
            critical=3,
        ),
        API_ID: SourceExpectation(
            items=5,
            documents=5,
            events={"TRANSACAO": 2, "DECISAO": 1, "NOTICIA": 1, "MULTA": 1},
            critical=0,
        ),
        CSV_ID: SourceExpectation(items=4, documents=3, events={"INCIDENTE": 3}, critical=3),
        DAG_ID: SourceExpectation(error_type="handler_not_available"),
    }
    documents = sum(s.documents for s in sources.values())
    return DemoOutcome(
        sources=sources,
        documents_count=documents,
        events_count=documents,
        errors_count=1,
        status="partial",
    )
