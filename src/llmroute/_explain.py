"""`Router.explain` and `Router.key_status`: the walk's own screening and look-ups, with
nothing sent, charged or changed. Key slots come from this process's view of the rotation
(a shared store's index is read, never advanced); waits come from the limiter's dry run."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmroute._candidate import Candidate
from llmroute._walk import Walk
from llmroute.keys.rotation import KeyPool
from llmroute.stores.base import Bucket
from llmroute.trace import CandidateExplanation, Explanation

__all__ = ["explain_chain", "key_status"]


async def explain_chain(
    walk: Walk,
    target: str,
    chain: Sequence[Candidate],
    needs: frozenset[str],
    tokens: int,
) -> Explanation:
    rows = [await _explain_one(walk, cand, needs, tokens) for cand in chain]
    return Explanation(target=target, chain=tuple(c.id for c in chain), candidates=tuple(rows))


async def _explain_one(
    walk: Walk, cand: Candidate, needs: frozenset[str], tokens: int
) -> CandidateExplanation:
    skipped = walk.screen(cand, needs, tokens)
    if skipped is not None:
        outcome, reason = skipped
        return CandidateExplanation(
            model=cand.id, provider=cand.provider_name, outcome=outcome, reason=reason
        )
    slots = await cand.pool.peek_order() if cand.pool is not None else [0]
    left = await walk.cooldowns(cand, slots)
    free = [s for s, seconds in zip(slots, left, strict=True) if seconds <= 0.0]
    if not free:
        soonest = min(left)
        return CandidateExplanation(
            model=cand.id,
            provider=cand.provider_name,
            outcome="keys_exhausted",
            cooldown_s=soonest,
            reason=f"every usable key is cooling down; the first frees in {soonest:.1f}s",
        )
    wait = 0.0
    slot = free[0]
    all_options, per_key = walk.options(cand)
    if all_options:
        options = [all_options[s] for s in free] if per_key else all_options
        wait, best = await _soonest_option(walk, options, tokens, cand.id)
        if per_key:
            slot = free[best]
    key = cand.label(slot)
    fits = wait == 0.0 or (cand.on_limit == "sleep" and wait <= cand.max_wait)
    if fits:
        return CandidateExplanation(
            model=cand.id,
            provider=cand.provider_name,
            outcome="would_send",
            key=key,
            wait_s=wait,
            reason=f"after waiting {wait:.1f}s for {walk.wait_reason(cand, slot, wait)}"
            if wait
            else None,
        )
    return CandidateExplanation(
        model=cand.id,
        provider=cand.provider_name,
        outcome="rate_limited_local",
        key=key,
        wait_s=wait,
        reason="the request can never fit its limits"
        if wait == math.inf
        else f"room in {wait:.1f}s, over what on_limit allows",
    )


async def _soonest_option(
    walk: Walk, options: Sequence[Sequence[Bucket]], tokens: int, queue: str
) -> tuple[float, int]:
    best, best_index = math.inf, 0
    for index, option in enumerate(options):
        wait = await walk.admission.peek([option], tokens, queue)
        if wait < best:
            best, best_index = wait, index
        if wait == 0.0:
            break
    return best, best_index


async def key_status(
    walk: Walk, pools: Mapping[str, KeyPool], candidates: Iterable[Candidate]
) -> dict[str, dict[str, Any]]:
    """For each provider with keys: index, slot labels, disabled slots and cooldowns
    (`{"model slot": seconds left}`); never a secret."""
    cands = list(candidates)
    out: dict[str, dict[str, Any]] = {}
    for name, pool in pools.items():
        await pool.load()
        cooling: dict[str, float] = {}
        for cand in cands:
            if cand.pool is not pool:
                continue
            left = await walk.cooldowns(cand, range(len(pool)))
            for slot, seconds in enumerate(left):
                if seconds > 0:
                    cooling[f"{cand.id} {pool.labels[slot]}"] = seconds
        out[name] = {
            "keys": len(pool),
            "index": pool.index,
            "strategy": pool.strategy,
            "labels": list(pool.labels),
            "disabled": [pool.labels[i] for i in sorted(pool.disabled)],
            "cooling": cooling,
        }
    return out
