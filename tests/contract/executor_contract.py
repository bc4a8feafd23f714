"""The Executor contract (architecture §6, ``run_source``, ``close_run``, ``cancel_source``), run against every executor.

A test module plugs an executor in by subclassing :class:`ExecutorContract`
and overriding two fixtures::

    class TestLocalExecutor(ExecutorContract):
        @pytest.fixture
        def executor(self, tmp_path):
            local = LocalExecutor(work_dir=tmp_path, allow_private_sources=True)
            yield local
            local.close()

        @pytest.fixture
        def scenarios(self, contract_site):
            return LocalScenarios(contract_site)

Fixture shape:
    ``executor`` — the adapter, closed by the fixture afterwards.
    ``scenarios`` — a :class:`Scenarios`: the sources the tests run, as this
    executor serves them, pointing at the loopback contract site
    (``tests/support/contract_site.py``, whose record is reset per test).

Capabilities (class attributes; override where the executor differs):
    FETCHES_URLS: the executor fetches the sources' URLs itself (the fake
        does not: the site must then see no request at all).
    PER_HOST_LIMIT: most requests at once per host across a run
        (``CRAWL_MAX_PER_HOST``).
    CRASH_ERRORS: the ``error_type`` s a crashing source may fail with.
    CUT_GRACE: seconds past a source's timeout within which ``run_source`` returns.
    CANCEL_GRACE: seconds after ``close_run`` (or ``cancel_source``) within which
        running sources return.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import pytest

from atlasreg_cursor.domain.documents import SourceResult
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig, fold_text, parse_watchlist
from atlasreg_cursor.ports.executor import Executor
from tests.support.contract_site import CATALOGUE, HOSTS, ContractSite

HANG_TIMEOUT = 4.0


class Scenarios(Protocol):
    """The sources of the contract, as one executor serves them."""

    site: ContractSite

    def working(self, source_id: str, *, keywords: Sequence[str] = ()) -> SourceConfig:
        """A source yielding every item of ``CATALOGUE``."""
        ...

    def expected_ids(self, source: SourceConfig) -> set[str]:
        """The document ids :meth:`working` sources yield (stable across runs)."""
        ...

    def crashing(self, source_id: str) -> SourceConfig:
        """A source whose handler or spider crashes."""
        ...

    def hanging(self, source_id: str, *, timeout: float) -> SourceConfig:
        """A source that never finishes on its own."""
        ...

    def started(self, source: SourceConfig) -> bool:
        """Tell whether the executor has started working on *source*."""
        ...

    def on_host(self, source_id: str, host: str, *, seconds: float) -> SourceConfig:
        """A working source on *host* whose answer takes *seconds*."""
        ...

    def disallowed(self, source_id: str) -> SourceConfig:
        """A working source, but under ``/privado/``, which the site's robots.txt disallows."""
        ...


def new_run() -> RunContext:
    """A run of its own (a fresh id)."""
    return RunContext(
        run_id=f"run_{uuid.uuid4().hex[:12]}",
        date=dt.date(2026, 11, 24),
        message_type=MessageType.START_DAILY_INGEST,
        identity=uuid.uuid4().hex,
    )


def parse_source(**fields: Any) -> SourceConfig:
    """One source parsed from watchlist JSON (it must be valid)."""
    config = parse_watchlist({"sources": [fields]})
    assert () == config.invalid, config.invalid
    return config.sources[0]


def run_all(
    executor: Executor, sources: Sequence[SourceConfig], run: RunContext, *, timeout: float = 120
) -> dict[str, SourceResult | SourceFailed]:
    """Run *sources* at once, one thread each, as the ingest service does."""
    outcomes: dict[str, SourceResult | SourceFailed] = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
        futures = {pool.submit(executor.run_source, s, run): s.id for s in sources}
        for future in cf.as_completed(futures, timeout=timeout):
            try:
                outcomes[futures[future]] = future.result()
            except SourceFailed as exc:
                outcomes[futures[future]] = exc
    return outcomes


class ExecutorContract:
    """Checks every Executor must pass."""

    FETCHES_URLS: ClassVar[bool] = True
    PER_HOST_LIMIT: ClassVar[int] = 2
    CRASH_ERRORS: ClassVar[frozenset[str]] = frozenset({"spider_error"})
    CUT_GRACE: ClassVar[float] = 8.0
    CANCEL_GRACE: ClassVar[float] = 8.0

    @pytest.fixture
    def executor(self) -> Executor:
        """Return the executor under test."""
        raise NotImplementedError

    @pytest.fixture
    def scenarios(self) -> Scenarios:
        """Return this executor's scenarios."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _fresh_record(self, scenarios: Scenarios) -> None:
        scenarios.site.record.reset()

    # --- success, identity, keywords -----------------------------------------------

    def test_success_yields_every_item(self, executor: Executor, scenarios: Scenarios) -> None:
        """A working source gives one document per item, all of that source."""
        source = scenarios.working("contrato_ok")
        run = new_run()

        result = executor.run_source(source, run)
        executor.close_run(run)

        assert result.ok
        assert "contrato_ok" == result.source_id
        assert len(CATALOGUE) == result.items_count
        assert scenarios.expected_ids(source) == {d.document_id for d in result.documents}
        assert {"contrato_ok"} == {d.source_id for d in result.documents}

    def test_document_identity_is_stable_across_runs(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """The same items make the same document ids in another run; ids are unique."""
        source = scenarios.working("contrato_ids")
        first_run, second_run = new_run(), new_run()

        first = executor.run_source(source, first_run)
        second = executor.run_source(source, second_run)
        executor.close_run(first_run)
        executor.close_run(second_run)

        ids = [d.document_id for d in first.documents]
        assert len(ids) == len(set(ids))
        assert ids == [d.document_id for d in second.documents]
        assert [d.title for d in first.documents] == [d.title for d in second.documents]

    def test_keywords_keep_only_matching_items(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """Only items whose title or summary has a keyword (any case) are kept."""
        source = scenarios.working("contrato_multas", keywords=["multa"])
        run = new_run()

        result = executor.run_source(source, run)
        executor.close_run(run)

        wanted = {t for _, t, s in CATALOGUE if "multa" in fold_text(f"{t} {s}")}
        assert wanted == {d.title for d in result.documents}
        assert len(CATALOGUE) == result.items_count

    # --- failures ---------------------------------------------------------------

    def test_crashing_source_fails_only_itself(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """A crashing source fails with its error; a source beside it succeeds."""
        run = new_run()
        crashing, working = scenarios.crashing("contrato_crash"), scenarios.working("vizinho")

        outcomes = run_all(executor, [crashing, working], run)
        executor.close_run(run)

        failure = outcomes["contrato_crash"]
        assert isinstance(failure, SourceFailed), failure
        assert failure.error_type in self.CRASH_ERRORS
        neighbour = outcomes["vizinho"]
        assert isinstance(neighbour, SourceResult), neighbour
        assert len(CATALOGUE) == len(neighbour.documents)

    def test_hanging_source_is_cut_at_its_timeout(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """A hanging source fails as timeout soon after its timeout; its run goes on."""
        run = new_run()
        hanging = scenarios.hanging("contrato_lento", timeout=HANG_TIMEOUT)
        working = scenarios.working("vizinho")

        started = time.monotonic()
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(executor.run_source, hanging, run)
            neighbour = executor.run_source(working, run)
            with pytest.raises(SourceFailed) as info:
                future.result(timeout=HANG_TIMEOUT + self.CUT_GRACE + 30)
            elapsed = time.monotonic() - started
        after = executor.run_source(working, run)
        executor.close_run(run)

        assert "timeout" == info.value.error_type
        assert HANG_TIMEOUT - 0.5 <= elapsed <= HANG_TIMEOUT + self.CUT_GRACE
        assert len(CATALOGUE) == len(neighbour.documents)
        assert len(CATALOGUE) == len(after.documents)

    # --- cancellation -----------------------------------------------------------------

    def test_close_run_cancels_running_sources(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """close_run makes the run's running sources return cancelled at once; it is idempotent."""
        run = new_run()
        hanging = scenarios.hanging("contrato_cancelado", timeout=120)
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(executor.run_source, hanging, run)
            deadline = time.monotonic() + 60
            while not scenarios.started(hanging) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert scenarios.started(hanging)
            closed_at = time.monotonic()

            executor.close_run(run)

            with pytest.raises(SourceFailed) as info:
                future.result(timeout=self.CANCEL_GRACE + 30)
            took = time.monotonic() - closed_at
        executor.close_run(run)
        executor.close_run(new_run())  # a run never seen
        again = new_run()
        later = executor.run_source(scenarios.working("depois"), again)
        executor.close_run(again)

        assert "cancelled" == info.value.error_type
        assert took <= self.CANCEL_GRACE
        assert len(CATALOGUE) == len(later.documents)

    def test_cancel_source_stops_that_source_alone(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """cancel_source makes one running source return cancelled at once; its neighbour
        in the run goes on until close_run; cancelling again, or what never ran, is a no-op."""
        run = new_run()
        stopped = scenarios.hanging("contrato_parado", timeout=120)
        neighbour = scenarios.hanging("contrato_vizinho", timeout=120)
        with cf.ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(executor.run_source, stopped, run)
            second = pool.submit(executor.run_source, neighbour, run)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                scenarios.started(stopped) and scenarios.started(neighbour)
            ):
                time.sleep(0.05)
            cancelled_at = time.monotonic()

            executor.cancel_source(run, stopped.id)

            with pytest.raises(SourceFailed) as info:
                first.result(timeout=self.CANCEL_GRACE + 30)
            took = time.monotonic() - cancelled_at
            time.sleep(0.3)
            neighbour_ran_on = not second.done()
            executor.cancel_source(run, stopped.id)
            executor.cancel_source(new_run(), "nunca")
            executor.close_run(run)
            with pytest.raises(SourceFailed) as closed:
                second.result(timeout=self.CANCEL_GRACE + 30)

        assert ("cancelled", "cancelled") == (info.value.error_type, closed.value.error_type)
        assert took <= self.CANCEL_GRACE
        assert neighbour_ran_on

    # --- politeness --------------------------------------------------------------

    def test_a_source_robots_txt_disallows_fails_unfetched(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """robots.txt is obeyed: the source fails with robots_disallowed, saying robots.txt,
        and its URL is never fetched."""
        run = new_run()

        with pytest.raises(SourceFailed) as info:
            executor.run_source(scenarios.disallowed("contrato_robots"), run)
        executor.close_run(run)

        assert "robots_disallowed" == info.value.error_type
        assert "robots.txt" in str(info.value)
        assert {} == {p: n for p, n in scenarios.site.record.hits.items() if "/privado" in p}

    def test_per_host_limit_holds_across_the_run(
        self, executor: Executor, scenarios: Scenarios
    ) -> None:
        """Three sources per host at once: never more than the limit at once on one host."""
        run = new_run()
        sources = [
            scenarios.on_host(f"host{h}_fonte{k}", host, seconds=0.6)
            for h, host in enumerate(HOSTS)
            for k in range(3)
        ]

        outcomes = run_all(executor, sources, run)
        executor.close_run(run)

        assert all(isinstance(o, SourceResult) for o in outcomes.values()), outcomes
        most = dict(scenarios.site.record.most)
        if not self.FETCHES_URLS:
            assert {} == most
            return
        assert set(HOSTS) == set(most)
        assert max(most.values()) == self.PER_HOST_LIMIT, most
