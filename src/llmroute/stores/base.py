"""The contract every state store keeps: what must agree between requests, processes and runs.

A store holds history, never configuration: limits travel with every `acquire` (a `Bucket`
carries them), so a limit changed in `limits.yaml`, or tightened by what a provider reports,
applies at once to the history already recorded.

Time: a store that says `uses_wall_clock` is given Unix seconds (the router's `clock.time()`),
one that does not is given the router's monotonic `clock.now()`. A store with a time source
of its own (Redis: the server's `TIME`) may ignore `now` entirely; every duration crossing
this interface is therefore relative (seconds from now), so skewed hosts still agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["Bucket", "Charge", "LimitKind", "StateStore"]

LimitKind = Literal["rpm", "tpm", "rpd", "tpd"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One set of windows and what it allows: a model, or one key of a model (`per_key`)."""

    name: str
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None


class Charge:
    """The handle of one admitted charge; opaque outside the store that made it.

    `tokens` is what is charged now (the estimate, then the corrected total).
    """

    __slots__ = ("tokens",)

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens


@runtime_checkable
class StateStore(Protocol):
    #: True: `now` arguments are Unix seconds; False: the router's monotonic seconds.
    uses_wall_clock: bool
    #: True when other processes (or later runs) see the same state.
    shared: bool

    # -- limiter windows ---------------------------------------------------------------------

    async def acquire(self, buckets: Sequence[Bucket], tokens: int, now: float) -> Charge | float:
        """Atomically check every bucket and, only if all have room, charge one request and
        `tokens` tokens to each. Returns the charge, or the seconds until all could fit
        (`math.inf` when the request can never fit)."""
        ...

    async def peek(self, buckets: Sequence[Bucket], tokens: int, now: float) -> float:
        """`acquire`'s answer without its charge: 0.0 when the request would be admitted now,
        else the seconds until it would (`math.inf`: never). Reads only, so a dry run
        (`explain`) is invisible to every other process sharing the store."""
        ...

    async def commit(self, charge: Charge, tokens: int) -> None:
        """Correct an admitted charge to the real token total (the provider's usage)."""
        ...

    async def cancel(self, charge: Charge) -> None:
        """Give a charge back whole: the request provably never reached the provider."""
        ...

    # -- cooldowns (keys after a 429, models, windows a provider reported spent) -------------

    async def set_cooldown(self, name: str, seconds: float, now: float) -> None:
        """Cool `name` for `seconds` from now; never shortens a longer cooldown."""
        ...

    async def cooldowns(self, names: Sequence[str], now: float) -> list[float]:
        """Seconds left on each named cooldown, 0.0 where there is none."""
        ...

    # -- keys --------------------------------------------------------------------------------

    async def disable_key(self, provider: str, fingerprint: str) -> None:
        """Mark a key refused by its provider. Keyed by a fingerprint, never the key, so a
        replaced key starts enabled."""
        ...

    async def disabled_keys(self, provider: str) -> frozenset[str]: ...

    async def rotate_index(self, provider: str, n_keys: int) -> int:
        """Fetch-and-advance the round-robin index: return where it stands (mod n_keys) and
        move it one on, atomically, so concurrent processes spread over the keys."""
        ...

    async def get_index(self, provider: str) -> int | None: ...

    async def set_index(self, provider: str, index: int) -> None: ...

    async def set_index_if_absent(self, provider: str, index: int) -> int:
        """Store `index` unless the store already holds one, atomically, and return the
        index it holds now: processes starting together on an empty store agree on one
        start instead of overwriting each other's first advances."""
        ...

    # -- limits learnt from the providers ----------------------------------------------------

    async def learn_limit(self, bucket: str, kind: LimitKind, value: int) -> None:
        """Record the limit the provider reports for a bucket (the latest report wins;
        tightening against the configured limit is the admission layer's job)."""
        ...

    async def learned_limits(self, bucket: str) -> dict[str, int]: ...

    # -- inspection and lifetime -------------------------------------------------------------

    async def snapshot(self, now: float) -> dict[str, Any]:
        """What the store holds, for `llmroute keys`/`explain`: {"cooldowns": {name:
        seconds_left}, "disabled": {provider: [fingerprint]}, "indexes": {provider: int},
        "learned": {bucket: {kind: value}}}. Secrets never appear (fingerprints only)."""
        ...

    async def aclose(self) -> None: ...
