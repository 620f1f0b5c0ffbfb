"""The window maths moved to `llmroute.stores.window`; this name stays for old imports."""

from __future__ import annotations

from llmroute.stores.window import DAY, MINUTE, Entry, SlidingWindow

__all__ = ["DAY", "MINUTE", "Entry", "SlidingWindow"]
