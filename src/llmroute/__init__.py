"""llmroute: an in-process asyncio LLM router.

```
from llmroute import Router

async with Router() as router:
    c = await router.complete("chat", "Summarise this ...")
```

Every exception is importable from here as from `llmroute.errors`. The router and the
result types are imported on first use, so `import llmroute` costs next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmroute import errors as _errors
from llmroute.errors import (
    ConfigError,
    LLMRouteError,
    PaidModelBlockedError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RequestError,
    RoutingError,
    StreamInterruptedError,
    UnknownTargetError,
)

if TYPE_CHECKING:
    from llmroute.router import Router
    from llmroute.trace import (
        Attempt,
        Chunk,
        Completion,
        Explanation,
        ModelUsage,
        ToolCall,
        Usage,
    )

_TRACE_NAMES = frozenset(
    {"Attempt", "Chunk", "Completion", "Explanation", "ModelUsage", "ToolCall", "Usage"}
)

__all__ = [
    "Attempt",
    "Chunk",
    "Completion",
    "ConfigError",
    "Explanation",
    "LLMRouteError",
    "ModelUsage",
    "PaidModelBlockedError",
    "ProviderError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RequestError",
    "Router",
    "RoutingError",
    "StreamInterruptedError",
    "ToolCall",
    "UnknownTargetError",
    "Usage",
    "__version__",
]
__all__ += sorted(set(_errors.__all__) - set(__all__))


def __getattr__(name: str) -> Any:
    if name == "Router":
        from llmroute.router import Router

        return Router
    if name in _TRACE_NAMES:
        from llmroute import trace

        return getattr(trace, name)
    if name in _errors.__all__:
        return getattr(_errors, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("llmroute")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'llmroute' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
