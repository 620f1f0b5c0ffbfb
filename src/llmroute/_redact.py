"""One redactor for every part of llmroute: engine, providers, CLI, log lines and reprs.

It knows every secret (each API key, each `${VAR}` value interpolated into `headers`, `env`
or `base_url`) and masks any run of 8 or more characters of one, so a provider that echoes
part of a key back cannot leak it either.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["FRAGMENT", "MASK", "Redactor"]

MASK = "***"
#: the shortest piece of a secret that is masked on its own
FRAGMENT = 8


class Redactor:
    """Masks secrets and their fragments in text. Built once; cheap when there is nothing
    to mask (one substring test per secret fragment seed)."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __repr__(self) -> str:
        return f"Redactor(secrets={len(self._secrets)})"

    def __call__(self, text: str) -> str:
        # Placeholder behaviour (whole secrets only); the fragment rule lands with the
        # fault-hardening work.
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
