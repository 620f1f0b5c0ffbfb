"""The paid-model gate: `USE_PAID_MODELS` decides whether paid candidates may be used.

With paid models off, a paid candidate in a chain is skipped (`skipped_paid`) and a paid
model asked for directly raises `PaidModelBlockedError`: never a surprise bill.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["use_paid_models_from"]

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})


def use_paid_models_from(env: Mapping[str, str]) -> bool:
    """true/1/yes/on, in any case and with spaces around, is true; anything else false."""
    return env.get("USE_PAID_MODELS", "").strip().lower() in _TRUE_WORDS
