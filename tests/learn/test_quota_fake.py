"""The fake provider's quota mode: real sliding windows, real 429s, Groq-style headers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from llmroute.limiter.learn import learned_limits, parse_gemini_quota, parse_headers, spent_for
from llmroute.testing import (
    FakeClock,
    FakeProviderServer,
    FakeScript,
    FakeTransport,
    Quota,
    QuotaEnforcer,
    Reply,
    ScaledClock,
    Stream,
)

OPENAI = "http://fake.test/v1/chat/completions"


def gemini_url(model: str) -> str:
    return f"http://fake.test/v1beta/models/{model}:generateContent"


def chat(model: str = "m", text: str = "hi", stream: bool = False) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


def gemini_body(text: str = "hi") -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def client(
    quota: QuotaEnforcer, clock: FakeClock, script: FakeScript | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=FakeTransport(script, clock=clock, quota=quota))


async def test_rpm_is_a_sliding_window_per_key_and_model() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer({"m": Quota(rpm=2)}, clock=clock)
    async with client(quota, clock) as http:
        auth = {"authorization": "Bearer k1"}
        first = await http.post(OPENAI, json=chat(), headers=auth)
        clock.advance(10)
        second = await http.post(OPENAI, json=chat(), headers=auth)
        third = await http.post(OPENAI, json=chat(), headers=auth)
        other_key = await http.post(OPENAI, json=chat(), headers={"authorization": "Bearer k2"})
        other_model = await http.post(OPENAI, json=chat("free"), headers=auth)
        assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
        assert other_key.status_code == 200 and other_model.status_code == 200
        # the oldest request leaves the window at t=60: 50 s from now
        assert third.headers["retry-after"] == "50"
        assert "requests per minute (RPM): Limit 2, Used 2" in third.json()["error"]["message"]
        clock.advance(49.9)
        assert (await http.post(OPENAI, json=chat(), headers=auth)).status_code == 429
        clock.advance(0.1)
        assert (await http.post(OPENAI, json=chat(), headers=auth)).status_code == 200
    assert quota.admitted == 4 and quota.refused == 2  # "free" has no quota: not counted
    assert quota.refused_by == {("m", "k1"): 2}


async def test_every_openai_answer_carries_groq_style_headers() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer(Quota(rpm=3, tpm=1000), clock=clock)
    script = FakeScript()
    script.set_default(None, Reply(text="x" * 40, prompt_tokens=100, completion_tokens=10))
    async with client(quota, clock, script) as http:
        ok = await http.post(OPENAI, json=chat())
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-remaining-requests"] == "2"
        assert ok.headers["x-ratelimit-reset-requests"] == "1m0s"
        assert ok.headers["x-ratelimit-limit-tokens"] == "1000"
        assert ok.headers["x-ratelimit-remaining-tokens"] == "890"  # the answer's usage
        clock.advance(0.5)
        await http.post(OPENAI, json=chat())
        last = await http.post(OPENAI, json=chat())
        assert last.status_code == 200
        info = parse_headers(last.headers, clock.time())
        assert info is not None
        assert learned_limits(info) == [("rpm", 3), ("tpm", 1000)]
        # a reset is when the window is back to its initial state: the newest charge gone
        assert spent_for(info) == pytest.approx(60.0)
        refused = await http.post(OPENAI, json=chat())
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"
        # ... while Retry-After is when this request would fit: the oldest charge gone
        assert refused.headers["retry-after"] == "60"
        clock.advance(10)
        later = await http.post(OPENAI, json=chat())
        assert later.headers["x-ratelimit-reset-requests"] == "50s"
        assert later.headers["retry-after"] == "50"


async def test_tokens_per_minute_are_checked_against_the_prompt() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer({"m": Quota(tpm=100)}, clock=clock)
    script = FakeScript()
    script.set_default("m", Reply(text="ok", completion_tokens=30))
    async with client(quota, clock, script) as http:
        prompt = "x" * 200  # 50 tokens
        first = await http.post(OPENAI, json=chat(text=prompt))  # 50 + 30 charged
        second = await http.post(OPENAI, json=chat(text=prompt))  # 80 + 50 > 100
        assert (first.status_code, second.status_code) == (200, 429)
        assert second.json()["error"]["type"] == "tokens"
        assert second.headers["x-ratelimit-remaining-tokens"] == "20"


async def test_streamed_answers_are_charged_their_reported_usage() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer({"m": Quota(tpm=1000)}, clock=clock)
    script = FakeScript()
    script.set_default("m", Stream(chunks=("a", "b"), prompt_tokens=7, completion_tokens=5))
    async with client(quota, clock, script) as http:
        body = {**chat(stream=True), "stream_options": {"include_usage": True}}
        async with http.stream("POST", OPENAI, json=body) as response:
            assert response.headers["x-ratelimit-remaining-tokens"] == "988"
            await response.aread()


async def test_requests_per_day_and_groq_day_headers() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer(Quota(rpm=100, rpd=2, request_headers="day"), clock=clock)
    async with client(quota, clock) as http:
        ok = await http.post(OPENAI, json=chat())
        assert ok.headers["x-ratelimit-limit-requests"] == "2"
        assert ok.headers["x-ratelimit-reset-requests"] == "24h0m0s"
        await http.post(OPENAI, json=chat())
        clock.advance(3600)
        refused = await http.post(OPENAI, json=chat())
        assert refused.status_code == 429
        assert "requests per day (RPD)" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == str(23 * 3600)
        info = parse_headers(refused.headers, clock.time())
        assert info is not None and learned_limits(info) == [("rpd", 2)]


async def test_gemini_429_names_the_quota_and_the_retry_delay() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer({"gemini-2.5-flash": Quota(rpm=1, rpd=5)}, clock=clock)
    async with client(quota, clock) as http:
        url = gemini_url("gemini-2.5-flash")
        ok = await http.post(url, json=gemini_body(), headers={"x-goog-api-key": "g1"})
        assert ok.status_code == 200
        assert not any(name.startswith("x-ratelimit") for name in ok.headers)
        clock.advance(22.5)
        refused = await http.post(url, json=gemini_body(), headers={"x-goog-api-key": "g1"})
        other = await http.post(url, json=gemini_body(), headers={"x-goog-api-key": "g2"})
    assert (refused.status_code, other.status_code) == (429, 200)
    error = refused.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    failure, _, retry = error["details"]
    assert failure["violations"][0]["quotaId"] == (
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    )
    assert failure["violations"][0]["quotaValue"] == "1"
    assert retry["retryDelay"] == "37.5s"
    info = parse_gemini_quota(error and refused.json(), retry_delay=37.5, day_reset=None)
    assert info is not None and learned_limits(info) == [("rpm", 1)]


async def test_a_shared_quota_counts_every_key_together() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer(Quota(rpm=1, per_key=False), clock=clock)
    async with client(quota, clock) as http:
        a = await http.post(OPENAI, json=chat(), headers={"authorization": "Bearer a"})
        b = await http.post(OPENAI, json=chat(), headers={"authorization": "Bearer b"})
    assert (a.status_code, b.status_code) == (200, 429)
    assert quota.refused_by == {("m", None): 1}


async def test_models_without_a_quota_and_other_paths_pass_through() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer({"m": Quota(rpm=0)}, clock=clock)
    async with client(quota, clock) as http:
        free = await http.post(OPENAI, json=chat("other"))
        missing = await http.post("http://fake.test/v1/nothing", json={})
        never = await http.post(OPENAI, json=chat("m"))
    assert free.status_code == 200 and "x-ratelimit-limit-requests" not in free.headers
    assert missing.status_code == 404
    assert never.status_code == 429 and "retry-after" not in never.headers


async def test_time_scale_shortens_the_windows() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer(Quota(rpm=1), clock=clock, time_scale=60)
    async with client(quota, clock) as http:
        assert (await http.post(OPENAI, json=chat())).status_code == 200
        clock.advance(0.5)  # half a provider minute
        refused = await http.post(OPENAI, json=chat())
        assert refused.headers["retry-after"] == "30"  # provider seconds
        clock.advance(0.5)
        assert (await http.post(OPENAI, json=chat())).status_code == 200


def test_quota_validation() -> None:
    with pytest.raises(ValueError):
        QuotaEnforcer(Quota(rpm=1), time_scale=0)
    with pytest.raises(ValueError):
        QuotaEnforcer(Quota(rpm=1), grace=-1)


async def test_grace_forgives_an_arrival_just_before_the_window_frees() -> None:
    clock = FakeClock()
    quota = QuotaEnforcer(Quota(rpm=1), clock=clock, grace=0.1)
    async with client(quota, clock) as http:
        assert (await http.post(OPENAI, json=chat())).status_code == 200
        clock.advance(59.8)
        assert (await http.post(OPENAI, json=chat())).status_code == 429
        clock.advance(0.1)  # 0.1 s early: forgiven
        assert (await http.post(OPENAI, json=chat())).status_code == 200


async def test_the_loopback_server_enforces_quotas_in_real_time() -> None:
    quota = QuotaEnforcer(Quota(rpm=2), time_scale=600)  # a minute in 0.1 s
    async with FakeProviderServer(quota=quota) as server, httpx.AsyncClient() as http:
        url = f"{server.openai_base_url}/chat/completions"
        codes = [(await http.post(url, json=chat())).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        await ScaledClock(600).sleep(60)
        assert (await http.post(url, json=chat())).status_code == 200
    assert quota.refused == 1


async def test_scaled_clock_runs_faster() -> None:
    clock = ScaledClock(1000)
    start = clock.now()
    await clock.sleep(20)  # 20 ms real
    assert clock.now() - start >= 20
    assert clock.time() - clock.now() == pytest.approx(clock.time() - clock.now(), abs=1)
    await asyncio.sleep(0)
