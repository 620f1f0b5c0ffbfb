"""Limits learnt from the providers: what their answers say, turned into admission rules.

After every answer (success or failure) the walk hands the provider's rate-limit report
(`ratelimit` on the response or the failure) to `Learner.observe`:

- a reported window size becomes a limit of the bucket: a model without a configured limit
  gets a window of that size, a configured limit is only ever tightened (`Admission.tighten`);
- a window reported spent closes the bucket until its reset (`Admission.close`, a cooldown
  in the store), so requests wait or fall back locally instead of drawing 429s.

Both live in the store (`learn_limit`, cooldowns): processes sharing a store share them.

Cold start: the first request to a model reads what the store already holds for it (once
per router). While nothing is known about a model of a provider that reports in headers,
the first request goes alone and the rest of a concurrent burst waits for its answer
(each for at most its own attempt timeout), so a burst cannot overrun a window before the
first answer has told its size. This costs one round trip per bucket per store lifetime,
and only where the provider reports: after an answer without any report the bucket is
left alone. The probe is per model.

With `per_key`, and for every provider with several keys (whose 429s already cool one key
at a time), what is learnt is kept per key: keys of one organisation that share a quota
need a configured model-wide limit to be held to it together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from llmroute._admission import closed_name
from llmroute._registry import provider_kind
from llmroute.limiter.learn import (
    RateLimitInfo,
    RawHeaders,
    learned_limits,
    spent_for,
    tighten,
    worth_parsing,
)
from llmroute.stores.base import Bucket, LimitKind, StateStore

if TYPE_CHECKING:
    from llmroute._admission import Admission
    from llmroute._candidate import Candidate

__all__ = ["Learner", "Probe", "learnt_lines", "report_of"]

logger = logging.getLogger("llmroute")

_KINDS: Final[tuple[LimitKind, ...]] = ("rpm", "tpm", "rpd", "tpd")
#: the cooldown names of closed buckets
CLOSED_PREFIX: Final = closed_name("")

Options = tuple[tuple[Bucket, ...], ...]


def report_of(result: object) -> RawHeaders | RateLimitInfo | None:
    """The rate-limit report an attempt's result carries: a response, a failure, or an
    opened stream (its first event)."""
    if isinstance(result, tuple):
        result = result[-1]
    report = getattr(result, "ratelimit", None)
    return report if isinstance(report, RawHeaders | RateLimitInfo) else None


def learnt_lines(snapshot: Mapping[str, Any]) -> list[str]:
    """What a store's snapshot holds of the providers' own reports, for `llmroute keys`:
    the limits learnt per bucket and the windows closed until their reset."""
    lines = []
    for bucket, kinds in sorted((snapshot.get("learned") or {}).items()):
        told = ", ".join(f"{kind} {value}" for kind, value in sorted(kinds.items()))
        lines.append(f"    learnt      {bucket}: {told}")
    for name, left in sorted((snapshot.get("cooldowns") or {}).items()):
        if name.startswith(CLOSED_PREFIX):
            bucket = name[len(CLOSED_PREFIX) :]
            lines.append(f"    closed      {bucket}: spent, {left:.0f}s to its reset")
    return lines


def _reports_limits(cand: Candidate) -> bool:
    """Whether every answer of `cand`'s provider type carries rate-limit headers (Gemini
    reports only in its 429s)."""
    kind = provider_kind(cand.provider_config.type)
    return kind is not None and kind.reports_limits


class Probe:
    """The cold-start request of one model: the others wait until `done`."""

    __slots__ = ("done", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = asyncio.Event()


class _Learnt:
    """What is known of one bucket."""

    __slots__ = ("limits", "raw_limits")

    def __init__(self) -> None:
        self.limits: dict[LimitKind, int] = {}
        #: the raw limit headers last read: an answer repeating them is not parsed again
        self.raw_limits: tuple[str | None, str | None] | None = None


class Learner:
    """Follows what the providers report about their own windows (see the module docstring)."""

    def __init__(
        self,
        *,
        store: StateStore,
        admission: Admission,
        wall: Callable[[], float],
    ) -> None:
        self._store = store
        self._admission = admission
        self._wall = wall
        self._learnt: dict[str, _Learnt] = {}
        #: models whose cold start is over (or never needed)
        self._known: set[str] = set()
        self._probes: dict[str, Probe] = {}
        #: learnt bucket options of models without configured limits
        self._options: dict[str, tuple[Options, bool]] = {}
        #: bucket -> until when (Unix seconds) this router closed it, for the trace
        self._closed_until: dict[str, float] = {}

    # -- what admission uses -----------------------------------------------------------------

    def options(self, cand: Candidate) -> tuple[Options, bool]:
        """The bucket options to admit `cand` against and whether they are per key: the
        ones learnt for it when the configuration lacks them, else the configured ones."""
        learnt = self._options.get(cand.id)
        if learnt is not None:
            return learnt
        return cand.bucket_options, cand.per_key

    def wait_reason(self, cand: Candidate, slot: int | None, waited: float) -> str:
        """Why a request to `cand` waited `waited` seconds (for the trace and explain)."""
        names = self._names(cand, slot)
        wall = self._wall()
        for name in names:
            if self._closed_until.get(name, 0.0) > wall - waited:
                return "the provider reported its window spent"
        for name in names:
            state = self._learnt.get(name)
            if state is None:
                continue
            configured = self._configured(cand, name)
            tighter = {
                kind: value
                for kind, value in state.limits.items()
                if tighten(getattr(configured, kind), value) == value
                and getattr(configured, kind) != value
            }
            if tighter:
                told = ", ".join(f"{kind} {value}" for kind, value in sorted(tighter.items()))
                return f"the limits the provider reported ({told})"
        return "the configured limit"

    @staticmethod
    def _configured(cand: Candidate, name: str) -> Bucket:
        """The configured limits of the bucket `name` of `cand` (none: a bare bucket)."""
        for option in cand.bucket_options:
            for bucket in option:
                if bucket.name == name:
                    return bucket
        return Bucket(name)

    def _names(self, cand: Candidate, slot: int | None) -> list[str]:
        per_key = self._per_key(cand)
        if slot is not None or not per_key:
            return [self._bucket_name(cand, slot or 0, per_key)]
        slots = len(cand.pool) if cand.pool is not None else 1
        return [self._bucket_name(cand, i, True) for i in range(slots)]

    # -- cold start --------------------------------------------------------------------------

    async def gate(self, cand: Candidate, timeout: float) -> Probe | None:
        """Before a request to `cand`: None to go ahead, or a `Probe` when this request is
        the one that goes alone (hand it back to `observe` or `release`). Waits, for at
        most `timeout` seconds, while another request is probing. The first request also
        reads what the store already holds for the model (another process may have learnt
        it), once per router."""
        model = cand.id
        if model in self._known:
            return None
        probe = self._probes.get(model)
        if probe is None:
            probe = self._probes[model] = Probe(model)
            try:
                loaded = await self._load(cand)
            except BaseException:
                self.release(probe)
                raise
            if loaded or not _reports_limits(cand):
                # Known from the store, or a provider whose answers teach nothing until a 429.
                self._known.add(model)
                self.release(probe)
                return None
            if not cand.bucket_options:
                # The probe is charged to a bucket without limits, so the window the
                # provider then reports already counts it.
                self._ensure_options(cand, self._per_key(cand))
            return probe
        try:
            async with asyncio.timeout(timeout):
                await probe.done.wait()
        except TimeoutError:
            logger.debug("%s: the cold-start probe is slow; going ahead", model)
        return None

    def release(self, probe: Probe | None) -> None:
        """The probe ended without teaching anything (no answer): let the others go; the
        next request probes again."""
        if probe is None:
            return
        if self._probes.get(probe.name) is probe:
            del self._probes[probe.name]
        probe.done.set()

    async def _load(self, cand: Candidate) -> bool:
        """Read what the store already holds for the model's buckets (another process or an
        earlier run may have learnt them); True when something was there."""
        found = False
        per_key = self._per_key(cand)
        slots = len(cand.pool) if per_key and cand.pool is not None else 1
        for slot in range(slots):
            name = self._bucket_name(cand, slot, per_key)
            limits = await self._store.learned_limits(name)
            if limits:
                found = True
                state = self._learnt.setdefault(name, _Learnt())
                for kind, value in limits.items():
                    if kind in _KINDS:
                        state.limits[kind] = value
                self._apply(cand, slot, name, per_key)
        return found

    # -- after an answer ---------------------------------------------------------------------

    def knows(self, cand: Candidate) -> bool:
        """True once `cand`'s cold start is over: requests then go without a gate."""
        return cand.id in self._known

    def observe(
        self, cand: Candidate, slot: int, result: object, probe: Probe | None
    ) -> Awaitable[None] | None:
        """Learn from one attempt's result (a response, a failure or an opened stream).
        Returns None when there is nothing to learn (the common answer: no await at all),
        else the work to await."""
        report = report_of(result)
        if probe is None:
            if report is None:
                return None
            if isinstance(report, RawHeaders):
                state = self._learnt.get(self._bucket_name(cand, slot, self._per_key(cand)))
                if state is not None and not worth_parsing(report, state.raw_limits):
                    return None
        return self._observe(cand, slot, report, probe)

    async def _observe(
        self,
        cand: Candidate,
        slot: int,
        report: RawHeaders | RateLimitInfo | None,
        probe: Probe | None,
    ) -> None:
        try:
            if report is not None:
                await self._learn(cand, slot, report)
            if probe is not None:
                # Answered: whatever it taught (or that nothing is reported), the cold start
                # of this model is over.
                self._known.add(cand.id)
                if report is None and not self._learnt_any(cand):
                    # A provider that reports nothing: no bucket to keep for this model.
                    self._options.pop(cand.id, None)
        finally:
            self.release(probe)

    async def _learn(self, cand: Candidate, slot: int, report: RawHeaders | RateLimitInfo) -> None:
        per_key = self._per_key(cand)
        name = self._bucket_name(cand, slot, per_key)
        state = self._learnt.get(name)
        if isinstance(report, RawHeaders):
            if state is not None and not worth_parsing(report, state.raw_limits):
                return
            info = report.parse(self._wall())
            if info is None:
                return
            if state is None:
                state = self._learnt[name] = _Learnt()
            state.raw_limits = (report.limit_requests, report.limit_tokens)
        else:
            info = report
            if state is None:
                state = self._learnt[name] = _Learnt()
        changed = False
        for kind, value in learned_limits(info):
            if state.limits.get(kind) != value:
                state.limits[kind] = value
                changed = True
                await self._store.learn_limit(name, kind, value)
        if changed:
            logger.debug("%s: the provider reports limits %s", name, state.limits)
            self._apply(cand, slot, name, per_key)
        # The provider's own hint, as the key's cooldown takes it: a bucket made only now
        # has not counted what was sent before, but a longer wait would override the hint.
        spent = spent_for(info)
        if spent is not None and spent > 0.0:
            logger.debug("%s: the provider reports a window spent for %.3fs", name, spent)
            self._closed_until[name] = max(self._closed_until.get(name, 0.0), self._wall() + spent)
            await self._admission.close(name, spent)

    def _apply(self, cand: Candidate, slot: int, name: str, per_key: bool) -> bool:
        """Make admission enforce the configured limits tightened by the learnt ones; True
        when the bucket had to be made now (nothing sent so far was charged to it)."""
        learnt = self._learnt[name].limits
        if self._store.shared:
            # Other processes sharing the store may report this bucket's window spent.
            self._admission.watch_closed(name)
        configured = self._configured(cand, name)
        made = False
        if not (cand.bucket_options and (cand.per_key or not per_key)):
            made = self._ensure_options(cand, per_key)
        self._admission.tighten(
            Bucket(
                name,
                rpm=tighten(configured.rpm, learnt.get("rpm")),
                tpm=tighten(configured.tpm, learnt.get("tpm")),
                rpd=tighten(configured.rpd, learnt.get("rpd")),
                tpd=tighten(configured.tpd, learnt.get("tpd")),
            )
        )
        return made

    def _ensure_options(self, cand: Candidate, per_key: bool) -> bool:
        """Admission options for learnt buckets the configuration does not have: a model
        without limits, or the keys of a model whose configured limit is model-wide. True
        when they are made now."""
        if cand.id in self._options:
            return False
        if per_key and cand.pool is not None:
            model_wide = cand.bucket_options[0] if cand.bucket_options else ()
            options: Options = tuple(
                (*model_wide, Bucket(self._bucket_name(cand, i, True)))
                for i in range(len(cand.pool))
            )
        else:
            options = ((Bucket(cand.id),),)
        self._options[cand.id] = (options, per_key)
        return True

    def _learnt_any(self, cand: Candidate) -> bool:
        keyed = f"{cand.id}#"
        return any(name == cand.id or name.startswith(keyed) for name in self._learnt)

    @staticmethod
    def _per_key(cand: Candidate) -> bool:
        """Whether what is learnt is kept per key: with `per_key`, and for every provider
        with several keys, whose 429s already cool one key at a time."""
        return bool(cand.per_key) or (cand.pool is not None and cand.pool.multi)

    @staticmethod
    def _bucket_name(cand: Candidate, slot: int, per_key: bool) -> str:
        # The configured buckets' names (_candidate.bucket), so learnt and configured agree.
        return f"{cand.id}#{slot}" if per_key else cand.id
