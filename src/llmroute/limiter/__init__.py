"""Exact sliding-window limits (rpm, tpm over 60 s; rpd, tpd over 24 h) and their state store."""

from __future__ import annotations

from llmroute.limiter._window import SlidingWindow
from llmroute.limiter.store import Bucket, MemoryStore, StateStore, Ticket

__all__ = ["Bucket", "MemoryStore", "SlidingWindow", "StateStore", "Ticket"]
