""" "Did you mean" suggestions for misspelt names: targets, model ids, providers, fields, enums.

Only error paths call this, so it may take its time; `difflib` is imported on first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["did_you_mean", "nothing_set_up", "suggest"]

_TOKEN = re.compile(r"[/\-_.:]+")
#: how alike two words must be (difflib's ratio) to be offered as a correction
_CUTOFF = 0.6
_TOKEN_CUTOFF = 0.75
_MARGIN = 0.1


def _ratio(a: str, b: str) -> float:
    import difflib

    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()


def suggest(word: str, choices: Iterable[str], *, limit: int = 3) -> list[str]:
    """The names in `choices` closest to `word`, best first (empty when none is close).

    Whole-name similarity first (`chta` -> `chat`, `roundrobin` -> `round_robin`); then, for
    abbreviated ids, names in which every piece of `word` starts or nearly spells a piece
    (`gem/flsh` -> `google_ai_studio/gemini-2.5-flash`).
    """
    import difflib

    options = sorted({c for c in choices if isinstance(c, str)})
    if not word or not options:
        return []
    by_lower: dict[str, str] = {}
    for option in options:
        by_lower.setdefault(option.lower(), option)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=limit, cutoff=_CUTOFF)
    if close:
        # only the ones nearly as close as the best: a far second guess is noise
        best = _ratio(word, close[0])
        return [by_lower[c] for c in close if _ratio(word, c) >= best - _MARGIN]
    pieces = [p for p in _TOKEN.split(word.lower()) if p]
    if not pieces:
        return []

    def fits(option: str) -> bool:
        parts = [p for p in _TOKEN.split(option.lower()) if p]
        return all(any(_piece_fits(piece, part) for part in parts) for piece in pieces)

    fitting = [o for o in options if fits(o)]
    fitting.sort(key=lambda o: -difflib.SequenceMatcher(None, word.lower(), o.lower()).ratio())
    return fitting[:limit]


def _piece_fits(piece: str, part: str) -> bool:
    import difflib

    if part.startswith(piece):
        return True
    return difflib.SequenceMatcher(None, piece, part).ratio() >= _TOKEN_CUTOFF


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` / ` (did you mean 'x' or 'y'?)`, or "" when nothing is close."""
    found = suggest(word, choices)
    if not found:
        return ""
    quoted = [repr(f) for f in found]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" (did you mean {listed}?)"


#: the outcomes of a candidate that was never sent anything for want of credentials or money
_NOT_SET_UP = frozenset({"skipped_unavailable", "skipped_paid"})


def nothing_set_up(outcomes: Iterable[str]) -> str:
    """The sentence for a request that failed because no candidate has credentials, else "".

    A newcomer meets this first (the shipped catalogue with no key set), so it names the two
    ways forward: `llmroute check` says what to set, `llmroute fake-server` runs offline.
    """
    seen = set(outcomes)
    if "skipped_unavailable" not in seen or not seen <= _NOT_SET_UP:
        return ""
    return (
        "no provider of this chain has an API key set (or its CLI installed): "
        "run `llmroute check` to see what to set, or `llmroute fake-server` to try it offline"
    )
