"""The ConfigSource contract on the Cloudflare emulator: ``KVConfigSource``, plus KV rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atlasreg_cursor.adapters.cloudflare._http import CloudflareClient
from atlasreg_cursor.adapters.cloudflare.kv import KVConfigSource
from atlasreg_cursor.domain.errors import ConfigError, ConfigNotFound, ConfigUnavailable
from atlasreg_cursor.ports.config import ConfigSource
from tests.contract.config_contract import ConfigContract, ConfigEnv, ManualClock, with_ids
from tests.emulator.cloudflare import (
    CloudflareEmulator,
    FailureRule,
    cloudflare_emulator,  # noqa: F401
)

pytestmark = pytest.mark.cloudflare

KEY = "NEWS_WATCHLIST_CONFIG"


def make_client(emulator: CloudflareEmulator, endpoint: str | None = None) -> CloudflareClient:
    """A client for the emulator's account."""
    return CloudflareClient(
        api_endpoint=endpoint or emulator.url,
        token=emulator.token,
        account_id=emulator.account_id,
        timeout=5.0,
    )


class KVConfigEnv:
    """A KV namespace in the emulator; "unavailable" means every KV call answers 503."""

    def __init__(self, emulator: CloudflareEmulator, key: str = KEY) -> None:
        self.emulator = emulator
        self.namespace_id = emulator.create_namespace()
        self.key = key
        self._outage: FailureRule | None = None

    def write(self, raw: bytes) -> None:
        self.emulator.kv_put(self.namespace_id, self.key, raw)

    def delete(self) -> None:
        self.emulator.kv_delete(self.namespace_id, self.key)

    def make_unavailable(self) -> None:
        self._outage = self.emulator.fail_next(
            None, status=503, path_contains=f"/namespaces/{self.namespace_id}/"
        )

    def make_available(self) -> None:
        self.emulator.clear_failure(self._outage)

    def source(self, *, ttl_seconds: float, clock: Callable[[], float]) -> ConfigSource:
        return KVConfigSource(
            make_client(self.emulator),
            namespace_id=self.namespace_id,
            key=self.key,
            ttl_seconds=ttl_seconds,
            clock=clock,
        )


class TestKVConfigSource(ConfigContract):
    """The KV config honours the whole contract."""

    @pytest.fixture
    def config_env(self, cloudflare_emulator: CloudflareEmulator) -> ConfigEnv:
        """A fresh namespace on a fresh emulator."""
        return KVConfigEnv(cloudflare_emulator)


# --- KV-specific behaviour ----------------------------------------------------------


@pytest.fixture
def emulator(cloudflare_emulator: CloudflareEmulator) -> CloudflareEmulator:
    """The per-test emulator under a short name."""
    return cloudflare_emulator


def test_missing_key_names_key_and_namespace(emulator: CloudflareEmulator) -> None:
    """404 + 10009 is ``ConfigNotFound`` saying which key in which namespace."""
    namespace = emulator.create_namespace()
    source = KVConfigSource(make_client(emulator), namespace_id=namespace)

    with pytest.raises(ConfigNotFound) as info:
        source.load()

    assert f"key 'NEWS_WATCHLIST_CONFIG' not found in KV namespace '{namespace}'" == str(info.value)


def test_unknown_namespace_is_a_configuration_error(emulator: CloudflareEmulator) -> None:
    """A 404 with code 10013 is a configuration error naming CF_KV_NAMESPACE_ID."""
    source = KVConfigSource(make_client(emulator), namespace_id="a" * 32)

    with pytest.raises(ConfigError, match="CF_KV_NAMESPACE_ID") as info:
        source.load()

    assert not isinstance(info.value, (ConfigNotFound, ConfigUnavailable))
    assert 1 == len(emulator.exchanges("/values/"))


def test_wrong_route_is_a_configuration_error(emulator: CloudflareEmulator) -> None:
    """An endpoint path that routes nowhere (7003) names the endpoint settings."""
    namespace = emulator.create_namespace()
    client = make_client(emulator, endpoint=emulator.url + "/client/v3")
    source = KVConfigSource(client, namespace_id=namespace)

    with pytest.raises(ConfigError, match="CF_API_ENDPOINT"):
        source.load()


def test_wrong_token_is_a_configuration_error(emulator: CloudflareEmulator) -> None:
    """A refused token (403) names CF_API_TOKEN and its KV permission, without the token."""
    namespace = emulator.create_namespace()
    client = CloudflareClient(
        api_endpoint=emulator.url, token="not-the-token", account_id=emulator.account_id
    )

    with pytest.raises(ConfigError, match="CF_API_TOKEN") as info:
        KVConfigSource(client, namespace_id=namespace).load()

    assert "KV" in str(info.value)
    assert "not-the-token" not in str(info.value)


@pytest.mark.parametrize("key", ["config:atlas", "watch/list v2", "ação%25"])
def test_keys_are_url_encoded(emulator: CloudflareEmulator, key: str) -> None:
    """Keys with ``:``, ``/``, spaces, ``%`` and non-ASCII characters round-trip."""
    namespace = emulator.create_namespace()
    emulator.kv_put(namespace, key, with_ids("enc"))
    source = KVConfigSource(make_client(emulator), namespace_id=namespace, key=key)

    config = source.load()

    assert ["enc"] == [s.id for s in config.sources]


def test_put_value_then_load(emulator: CloudflareEmulator) -> None:
    """``put_value`` writes the key (multipart with metadata) and the next load sees it."""
    namespace = emulator.create_namespace()
    source = KVConfigSource(make_client(emulator), namespace_id=namespace, clock=ManualClock())
    source.put_value(KEY, with_ids("first"))
    first = [s.id for s in source.load().sources]

    source.put_value(KEY, with_ids("second"), metadata={"pushed_by": "cli"})
    second = [s.id for s in source.load().sources]

    [put] = emulator.exchanges("/values/")[-2:-1]
    assert ["first"] == first
    assert ["second"] == second
    assert put.request_headers["content-type"].startswith("multipart/form-data")
    assert {"pushed_by": "cli"} == emulator.namespaces[namespace][KEY].metadata


def test_list_keys_pages_through_the_cursor(emulator: CloudflareEmulator) -> None:
    """``list_keys`` follows ``result_info.cursor`` and keeps the prefix on every page."""
    namespace = emulator.create_namespace()
    names = [f"cfg:{n:02d}" for n in range(25)] + ["other"]
    for name in names:
        emulator.kv_put(namespace, name, b"{}")
    source = KVConfigSource(make_client(emulator), namespace_id=namespace)

    listed = list(source.list_keys("cfg:", page_size=10))

    pages = emulator.exchanges("/keys")
    assert names[:25] == listed
    assert 3 == len(pages)
    assert all("cfg:" == page.query["prefix"] for page in pages)


def test_rate_limit_then_success(emulator: CloudflareEmulator) -> None:
    """A 429 on the KV read is retried; the config still loads."""
    namespace = emulator.create_namespace()
    emulator.kv_put(namespace, KEY, with_ids("ok"))
    emulator.fail_next(2, status=429, retry_after=0)
    source = KVConfigSource(make_client(emulator), namespace_id=namespace)

    config = source.load()

    assert ["ok"] == [s.id for s in config.sources]
    assert [429, 429, 200] == [e.status for e in emulator.exchanges("/values/")]
