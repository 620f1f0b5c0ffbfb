"""Property: every shared backend decides exactly as the in-memory reference does.

Random sequences of admissions (with their commits and cancels) over random limits are
replayed on the memory store and on the backend; each admission must get the same answer,
and each refusal the same wait.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.stores import Bucket, Charge, MemoryStore, RedisStore, SQLiteStore, StateStore

T0 = 1_790_000_000.0

limits = st.builds(
    Bucket,
    name=st.just("m"),
    rpm=st.none() | st.integers(0, 4),
    tpm=st.none() | st.integers(40, 200),
    rpd=st.none() | st.integers(1, 8),
    tpd=st.none() | st.integers(100, 600),
)
# (ms since the previous step, tokens, what happens next, real tokens)
steps = st.lists(
    st.tuples(
        st.integers(0, 40_000),
        st.integers(0, 60),
        st.sampled_from(["keep", "commit", "cancel"]),
        st.integers(0, 90),
    ),
    min_size=1,
    max_size=30,
)


async def replay(
    store: StateStore, bucket: Bucket, plan: list[tuple[int, int, str, int]]
) -> list[object]:
    answers: list[object] = []
    now = T0
    for ms, tokens, then, real in plan:
        now += ms / 1000
        got = await store.acquire([bucket, Bucket("other", rpm=3)], tokens, now)
        if isinstance(got, Charge):
            answers.append("admitted")
            if then == "commit":
                await store.commit(got, real)
            elif then == "cancel":
                await store.cancel(got)
        else:
            answers.append(round(got, 3))
    return answers


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_backends_agree_with_the_reference(kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_server").url if kind == "redis" else ""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bucket=limits, plan=steps)
    def agree(bucket: Bucket, plan: list[tuple[int, int, str, int]]) -> None:
        async def run() -> None:
            expected = await replay(MemoryStore(), bucket, plan)
            with tempfile.TemporaryDirectory() as tmp:
                store: StateStore = (
                    SQLiteStore(Path(tmp) / "s.sqlite3")
                    if kind == "sqlite"
                    else RedisStore(url, f"prop-{uuid.uuid4().hex[:10]}", use_server_time=False)
                )
                try:
                    assert await replay(store, bucket, plan) == expected
                finally:
                    await store.aclose()

        asyncio.run(run())

    agree()
