"""Property-based fuzzing of every untrusted-input parser (hypothesis).

Each target of ``fuzz_targets.py`` gets its committed seed corpus, mutations
of it (bytes inserted, replaced or cut at random places) and random bytes.
The example budget is the hypothesis profile's (60 locally, 300 in CI); the
coverage-guided pass is ``fuzz_atheris.py`` (CI, time-bounded).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.security.fuzz_targets import TARGETS, seeds

pytestmark = pytest.mark.security


def _mutated(corpus: list[bytes]) -> st.SearchStrategy[bytes]:
    def mutate(seed: bytes, at: int, cut: int, insert: bytes) -> bytes:
        position = at % (len(seed) + 1)
        return seed[:position] + insert + seed[position + cut :]

    return st.builds(
        mutate,
        st.sampled_from(corpus),
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=8),
        st.binary(max_size=12)
        | st.sampled_from(
            [b"\\", b"@", b"\x00", b"\r\n", b"%00", b"NaN", b"1e400", b"..", b"\xff", b"[" * 50]
        ),
    )


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seed_corpus_holds(target: str) -> None:
    """Every committed seed passes its target's contract."""
    corpus = seeds(target)

    for seed in corpus:
        TARGETS[target](seed)
    assert len(corpus) >= 5


@pytest.mark.parametrize("target", sorted(TARGETS))
@given(data=st.data())
def test_mutated_and_random_inputs_hold(target: str, data: st.DataObject) -> None:
    """Mutated seeds and random bytes never break a target's contract."""
    strategy = _mutated(seeds(target)) | st.binary(max_size=300)

    TARGETS[target](data.draw(strategy))
