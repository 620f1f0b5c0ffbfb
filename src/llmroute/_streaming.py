"""Stream plumbing: open a provider stream up to its first event, relay the rest under the
gap timeout and the call's deadline, and settle it like a completion at its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from llmroute._candidate import Candidate
from llmroute._recorder import Call
from llmroute._walk import Served, Walk
from llmroute.errors import StreamInterruptedError
from llmroute.providers.base import AttemptFailed, Provider, ProviderRequest, StreamEvent
from llmroute.trace import Chunk

__all__ = ["close_events", "merge_events", "open_stream", "relay"]

Opened = tuple[AsyncIterator[StreamEvent], StreamEvent]


async def open_stream(
    provider: Provider, request: ProviderRequest, key: str | None
) -> tuple[AsyncIterator[StreamEvent], StreamEvent]:
    """Open the stream and wait for its first event, so failures before it can fall back."""
    events = provider.stream(request, key)
    try:
        first = await events.__anext__()
    except StopAsyncIteration:
        await close_events(events)
        raise AttemptFailed("server_error", "stream ended without any event") from None
    except BaseException:
        await close_events(events)
        raise
    return events, first


async def close_events(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def merge_events(a: StreamEvent, b: StreamEvent) -> StreamEvent:
    return StreamEvent(
        finish_reason=b.finish_reason or a.finish_reason,
        usage=b.usage or a.usage,
        served_model=b.served_model or a.served_model,
        tool_calls=b.tool_calls or a.tool_calls,
    )


class _Gap(Exception):
    """No event within the gap timeout, or the call's deadline passed."""


async def _next(
    walk: Walk, events: AsyncIterator[StreamEvent], gap: float, deadline_at: float
) -> StreamEvent | None:
    left = deadline_at - walk.mono()
    if left <= 0.0:
        raise _Gap("the deadline passed while the stream was running")
    seconds = gap if gap < left else left
    watchdog = walk.watchdog
    limit = watchdog.arm(seconds)
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None
    except asyncio.CancelledError:
        if not limit.fired:
            raise
        if seconds < gap:
            raise _Gap("the deadline passed while the stream was running") from None
        raise _Gap(f"no chunk within {gap:.3g}s") from None
    finally:
        watchdog.disarm(limit)


async def relay(
    walk: Walk,
    cand: Candidate,
    call: Call,
    served: Served[Opened],
    request: ProviderRequest,
    tokens: int,
    gap: float,
) -> AsyncGenerator[Chunk, None]:
    """Yield the stream's text as chunks, then one closing chunk with the facts."""
    events, first = served.result
    delivered = 0
    final: StreamEvent | None = None
    finished = False
    try:
        event: StreamEvent | None = first
        while event is not None:
            if event.finish_reason is not None or event.usage is not None or event.tool_calls:
                final = event if final is None else merge_events(final, event)
            if event.text:
                delivered += len(event.text)
                yield Chunk(text=event.text)
            event = await _next(walk, events, gap, call.deadline_at)
        finished = True
    except (AttemptFailed, _Gap) as exc:
        raise _interrupted(walk, cand, call, served, exc, delivered) from None
    finally:
        if not finished:
            await close_events(events)
    usage, _cost, pending = walk.finish(
        cand, call, served, final.usage if final else None, request, tokens
    )
    if pending is not None:
        await pending
    yield Chunk(
        text="",
        finish_reason=final.finish_reason if final else None,
        usage=usage,
        model=cand.id,
        attempts=call.attempts,
        tool_calls=list(final.tool_calls) if final else [],
    )


def _interrupted(
    walk: Walk,
    cand: Candidate,
    call: Call,
    served: Served[Opened],
    exc: AttemptFailed | _Gap,
    delivered: int,
) -> StreamInterruptedError:
    recorder = walk.recorder
    if isinstance(exc, AttemptFailed):
        kind, status, message = exc.kind, exc.status, recorder.redact(exc.message)
    else:
        kind, status, message = "timeout", None, str(exc)
    recorder.failed_send(cand)
    recorder.row(
        call, cand, served.slot, kind, status=status, started=served.started, error=message
    )
    return StreamInterruptedError(
        f"{cand.id}: stream failed after {delivered} characters: {message}",
        call.attempts,
        status=status,
        provider=cand.provider_name,
        model=cand.id,
        delivered_chars=delivered,
    )
