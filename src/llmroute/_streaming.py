"""Stream plumbing: open a provider stream up to its first event, merge closing facts, close."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmroute.providers.base import AttemptFailed, Provider, ProviderRequest, StreamEvent

__all__ = ["close_events", "merge_events", "open_stream"]


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
