"""Run alerts for the webhook's ``metadata`` (watchlist ``global_settings``).

- ``alert_on_zero_results``: every source that finished ok with no document
  is listed in ``metadata.alerts`` (``{"type": "zero_results", …}``); the list
  is present, possibly empty, whenever the setting is on.
- ``alert_recipients``: passed on as ``metadata.alert_recipients`` for the
  Worker to notify.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .runs import SourceOutcome
from .sources import GlobalSettings

ZERO_RESULTS = "zero_results"


def zero_result_sources(outcomes: Iterable[SourceOutcome]) -> list[str]:
    """Ids of the sources that finished ok without a single document, sorted."""
    return sorted(o.source_id for o in outcomes if o.ok and o.documents_count == 0)


def alert_metadata(outcomes: Iterable[SourceOutcome], settings: GlobalSettings) -> dict[str, Any]:
    """The ``alerts`` and ``alert_recipients`` entries of a run's webhook metadata."""
    metadata: dict[str, Any] = {}
    if settings.alert_on_zero_results:
        metadata["alerts"] = [
            {
                "type": ZERO_RESULTS,
                "source_id": source_id,
                "message": f"source {source_id} returned no documents",
            }
            for source_id in zero_result_sources(outcomes)
        ]
    if settings.alert_recipients:
        metadata["alert_recipients"] = list(settings.alert_recipients)
    return metadata


__all__ = ["ZERO_RESULTS", "alert_metadata", "zero_result_sources"]
