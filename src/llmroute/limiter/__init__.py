"""Old home of the limiter's store and window maths; both live in `llmroute.stores` now.

These names stay importable for code written against earlier versions.
"""

from __future__ import annotations

from llmroute.stores import Bucket, MemoryStore, StateStore
from llmroute.stores.window import SlidingWindow

__all__ = ["Bucket", "MemoryStore", "SlidingWindow", "StateStore"]
