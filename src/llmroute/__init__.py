"""llmroute: an in-process asyncio LLM router.

```
from llmroute import Router

async with Router() as router:
    c = await router.complete("chat", "Summarise this ...")
```

Names are imported on first use, so `import llmroute` costs next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmroute.router import Router
    from llmroute.trace import Attempt, Chunk, Completion, ModelUsage, ToolCall, Usage

__all__ = [
    "Attempt",
    "Chunk",
    "Completion",
    "ModelUsage",
    "Router",
    "ToolCall",
    "Usage",
    "__version__",
]

_TRACE_NAMES = frozenset({"Attempt", "Chunk", "Completion", "ModelUsage", "ToolCall", "Usage"})


def __getattr__(name: str) -> Any:
    if name == "Router":
        from llmroute.router import Router

        return Router
    if name in _TRACE_NAMES:
        from llmroute import trace

        return getattr(trace, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("llmroute")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'llmroute' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
