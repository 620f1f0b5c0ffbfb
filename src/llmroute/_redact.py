"""One redactor for every part of llmroute: engine, providers, CLI, log lines and reprs.

It knows every secret (each API key, each `${VAR}` value interpolated into `headers`, `env`
or `base_url`) and masks any run of 8 or more characters of one, so a provider that echoes
part of a key back cannot leak it either.

How it stays cheap: every 5-character piece of every secret is indexed once, at
construction. A run of 8 or more characters shared with a secret always contains a whole
5-character piece starting at a multiple of 4 in the text, so a scan reads only every
fourth position (about 0.1 ms for a 10 kB error body with no secret in it) and extends
each hit both ways to see whether it reaches 8 characters.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["FRAGMENT", "MASK", "Redactor"]

MASK = "***"
#: the shortest piece of a secret that is masked on its own
FRAGMENT = 8
#: shorter values ("1", "on") are settings, and masking them would garble every message
MIN_SECRET = 4

# A shared run of FRAGMENT characters holds a whole _PIECE-character piece at a text
# position that is a multiple of _STRIDE, as long as _PIECE + _STRIDE - 1 <= FRAGMENT.
_STRIDE = 4
_PIECE = FRAGMENT - _STRIDE + 1


class Redactor:
    """Masks secrets and every run of 8+ characters of one in text. Built once.

        redact = Redactor(["sk-live-0123456789abcdef"])
        redact("bad key sk-live-0123456789abcdef")   # 'bad key ***'
        redact("key ends in 456789abcdef")           # 'key ends in ***'

    Secrets shorter than 8 characters are masked only where they appear whole, and those
    shorter than 4 not at all.
    """

    __slots__ = ("_pieces", "_secrets", "_short")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(
            sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        )
        self._short = tuple(s for s in self._secrets if len(s) < FRAGMENT)
        #: each piece of each long secret -> where it occurs: (secret, offset) pairs
        self._pieces: dict[str, list[tuple[str, int]]] = {}
        for secret in self._secrets:
            if len(secret) < FRAGMENT:
                continue
            for offset in range(len(secret) - _PIECE + 1):
                places = self._pieces.setdefault(secret[offset : offset + _PIECE], [])
                places.append((secret, offset))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __repr__(self) -> str:
        return f"Redactor(secrets={len(self._secrets)})"

    def __call__(self, text: str) -> str:
        if not self._secrets:
            return text
        spans = self._spans(text) if self._pieces else []
        for secret in self._short:
            start = text.find(secret)
            while start != -1:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        if not spans:
            return text
        return _mask(text, spans)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Every run of FRAGMENT+ characters the text shares with a secret."""
        pieces = self._pieces
        spans: list[tuple[int, int]] = []
        covered = 0  # text before this index is inside a span found already
        for at in range(0, len(text) - _PIECE + 1, _STRIDE):
            places = pieces.get(text[at : at + _PIECE])
            if places is None or at + _PIECE <= covered:
                continue
            for secret, offset in places:
                start, end = _extend(text, at, secret, offset)
                if end - start >= FRAGMENT:
                    spans.append((start, end))
                    covered = max(covered, end)
        return spans


def _extend(text: str, at: int, secret: str, offset: int) -> tuple[int, int]:
    """The longest run around text[at:at+_PIECE] == secret[offset:offset+_PIECE]."""
    back = 0
    limit = min(at, offset)
    while back < limit and text[at - back - 1] == secret[offset - back - 1]:
        back += 1
    ahead = _PIECE
    limit = min(len(text) - at, len(secret) - offset)
    while ahead < limit and text[at + ahead] == secret[offset + ahead]:
        ahead += 1
    return at - back, at + ahead


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    spans.sort()
    parts: list[str] = []
    done = 0  # text before this index is already in parts
    start, end = spans[0]
    for next_start, next_end in spans[1:]:
        if next_start <= end:  # overlapping or touching runs become one mask
            end = max(end, next_end)
            continue
        parts += (text[done:start], MASK)
        done = end
        start, end = next_start, next_end
    parts += (text[done:start], MASK, text[end:])
    return "".join(parts)
