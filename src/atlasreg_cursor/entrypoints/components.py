"""What the backend factories and the commands build from settings besides the ports.

The webhook signer, the crawl policy, Core's Celery and Airflow clients and
the breaker board. :mod:`.backends` (the factories) and :mod:`.bootstrap`
(the App) import from here, never the other way round. Like the factories,
each function imports its adapter inside, so ``local`` mode never imports
Celery or redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import SettingsError

if TYPE_CHECKING:
    from atlasreg_cursor.adapters.breakers import Breaker, BreakerBoard
    from atlasreg_cursor.adapters.core.airflow import AirflowClient
    from atlasreg_cursor.adapters.core.celery import CeleryGateway
    from atlasreg_cursor.domain.signing import WebhookSigner

    from .settings import Settings


def build_signer(s: Settings) -> WebhookSigner | None:
    """The webhook signer, or ``None`` when no secret is configured."""
    if not s.hook_hmac_secret:
        return None
    from atlasreg_cursor.domain.signing import WebhookSigner

    try:
        return WebhookSigner(
            s.hook_hmac_secret,
            additional_secrets=s.hook_secrets[1:],
            standard=s.hook_standard_signature,
            legacy=s.hook_legacy_signature,
        )
    except ValueError as exc:
        raise SettingsError(f"HOOK_HMAC_SECRET: {exc}") from None


def core_clients(
    s: Settings, breakers: BreakerBoard | None = None
) -> tuple[CeleryGateway, AirflowClient | None]:
    """Core's Celery gateway and Airflow client (``None`` without ``AIRFLOW_API_URL``)."""
    from atlasreg_cursor.adapters.core.airflow import AirflowClient
    from atlasreg_cursor.adapters.core.celery import CeleryGateway

    broker = s.celery_broker_url or s.redis_url
    celery = CeleryGateway(
        broker_url=broker,
        result_backend=s.celery_result_backend or broker,
        queue=s.celery_queue,
        breaker=_core_breaker(breakers, "celery"),
    )
    airflow = None
    if s.airflow_api_url:
        airflow = AirflowClient(
            base_url=s.airflow_api_url,
            username=s.airflow_username or "",
            password=s.airflow_password or "",
            api_version=s.airflow_api_version,
            breaker=_core_breaker(breakers, "airflow"),
        )
    return celery, airflow


def _core_breaker(breakers: BreakerBoard | None, dependency: str) -> Breaker | None:
    if breakers is None:
        return None
    from atlasreg_cursor.adapters.breakers import ExecutorCircuitOpen

    return breakers.breaker_for(dependency, open_error=ExecutorCircuitOpen)


def build_breakers(s: Settings, *, shared: bool) -> BreakerBoard:
    """
    The process's breaker board; kept in ``REDIS_URL`` when *shared*.

    *shared* is the queue backend's ``shares_breakers_through_redis``: every
    daemon on that Redis then sees one state per dependency.
    """
    from atlasreg_cursor.adapters.breakers import BreakerBoard

    return BreakerBoard(
        fail_max=s.breaker_fail_max,
        reset_seconds=s.breaker_reset_seconds,
        redis_url=s.redis_url if shared else None,
        namespace=f"cursor:{s.queue_name}:breaker",
    )
