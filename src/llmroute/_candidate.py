"""One model as the router walks it, with everything a request needs precomputed."""

from __future__ import annotations

from llmroute.config import LimitSpec, ModelConfig
from llmroute.config._schema import ProviderConfig
from llmroute.keys.rotation import KeyRing
from llmroute.limiter.store import Bucket
from llmroute.providers.base import Provider

__all__ = ["Candidate", "bucket"]


class Candidate:
    """One model as the router walks it: everything precomputed once."""

    __slots__ = (
        "bucket",
        "cooldown_names",
        "id",
        "key_buckets",
        "keyring",
        "limits",
        "max_wait",
        "model",
        "multi_key",
        "on_limit",
        "paid",
        "price_in",
        "price_out",
        "provider",
        "provider_config",
        "provider_name",
        "secrets",
        "slot_labels",
        "wire_model",
    )

    def __init__(
        self,
        model: ModelConfig,
        provider: Provider,
        provider_config: ProviderConfig,
        keyring: KeyRing | None,
        limits: LimitSpec,
        strategy_on_limit: str,
        strategy_max_wait: float,
    ) -> None:
        self.id = model.id
        self.model = model
        self.provider = provider
        self.provider_config = provider_config
        self.provider_name = provider_config.name
        self.wire_model = model.model
        self.paid = model.paid
        self.keyring = keyring
        self.multi_key = keyring is not None and len(keyring) > 1
        self.limits = limits
        self.on_limit = limits.on_limit or strategy_on_limit
        self.max_wait = (
            limits.max_wait_seconds if limits.max_wait_seconds is not None else strategy_max_wait
        )
        self.price_in = model.price.input_per_mtok if model.price else 0.0
        self.price_out = model.price.output_per_mtok if model.price else 0.0
        n_slots = len(keyring) if keyring is not None else 1
        self.secrets: tuple[str | None, ...] = keyring.secrets if keyring is not None else (None,)
        self.slot_labels: tuple[str | None, ...] = (
            keyring.labels if keyring is not None else (None,)
        )
        # Gemini quotas are per model and project: a 429 cools this model on that key only.
        self.cooldown_names = tuple(f"cooldown:{model.id}#{i}" for i in range(n_slots))
        limited = not limits.is_unlimited
        self.bucket: Bucket | None = (
            bucket(model.id, limits) if limited and not limits.per_key else None
        )
        self.key_buckets: tuple[Bucket, ...] | None = (
            tuple(bucket(f"{model.id}#{i}", limits) for i in range(n_slots))
            if limited and limits.per_key
            else None
        )

    def unavailable_reason(self) -> str | None:
        reason = self.provider.unavailable_reason
        if reason:
            return reason
        if self.provider_config.uses_keys:
            if self.keyring is None:
                return f"no API key set for provider {self.provider_name!r}"
            if not self.keyring.usable:
                return f"every key of provider {self.provider_name!r} was refused"
        return None


def bucket(name: str, spec: LimitSpec) -> Bucket:
    return Bucket(name=name, rpm=spec.rpm, tpm=spec.tpm, rpd=spec.rpd, tpd=spec.tpd)
