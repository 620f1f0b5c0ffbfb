"""llmroute: an in-process asyncio LLM router.

```
from llmroute import Router

async with Router() as router:
    c = await router.complete("chat", "Summarise this ...")
```

Every exception and result type is importable from here (as from `llmroute.errors` and
`llmroute.trace`, both plain dataclass modules); the router and its HTTP stack load on first
use, so `import llmroute` costs next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmroute import errors as _errors
from llmroute import trace as _trace
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
    from llmroute.trace import Attempt, Chunk, Completion, Explanation, ModelUsage, Usage

#: the result types; each is exported once trace.py defines it (trace.py is light)
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
    "UnknownTargetError",
    "Usage",
    "__version__",
]
__all__ += sorted(set(_errors.__all__) - set(__all__))
__all__ += sorted(n for n in _TRACE_NAMES - set(__all__) if hasattr(_trace, n))


def __getattr__(name: str) -> Any:
    if name == "Router":
        from llmroute.router import Router

        return Router
    if name in _TRACE_NAMES and hasattr(_trace, name):
        return getattr(_trace, name)
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
