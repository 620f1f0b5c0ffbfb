"""One model as the router walks it, with everything a request needs precomputed."""

from __future__ import annotations

from llmroute._registry import provider_kind
from llmroute.config import LimitSpec, ModelConfig, ProviderConfig
from llmroute.keys.rotation import KeyPool
from llmroute.providers.base import Provider
from llmroute.stores.base import Bucket

__all__ = ["Candidate", "bucket", "default_capabilities"]


def default_capabilities(provider_type: str) -> frozenset[str]:
    """What a model accepts beyond text when its entry does not say: its provider type's
    support, as the type's module declared it."""
    kind = provider_kind(provider_type)
    return kind.capabilities if kind is not None else frozenset()


class Candidate:
    """One model as the router walks it: everything precomputed once."""

    __slots__ = (
        "bucket_options",
        "capabilities",
        "context_window",
        "cooldown_names",
        "id",
        "limited",
        "max_wait",
        "model",
        "on_limit",
        "paid",
        "per_key",
        "pool",
        "price",
        "price_in",
        "price_out",
        "provider",
        "provider_config",
        "provider_name",
        "rotates",
        "secrets",
        "wire_model",
    )

    def __init__(
        self,
        model: ModelConfig,
        provider: Provider,
        provider_config: ProviderConfig,
        pool: KeyPool | None,
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
        self.pool = pool
        #: the key each slot sends (None for a provider without keys)
        self.secrets: tuple[str | None, ...] = pool.secrets if pool is not None else (None,)
        #: more than one key: every request moves the rotation
        self.rotates = pool is not None and pool.multi
        self.on_limit = limits.on_limit or strategy_on_limit
        self.max_wait = (
            limits.max_wait_seconds if limits.max_wait_seconds is not None else strategy_max_wait
        )
        self.price = model.price
        self.price_in = model.price.input_per_mtok if model.price else 0.0
        self.price_out = model.price.output_per_mtok if model.price else 0.0
        self.capabilities = (
            model.capabilities
            if model.capabilities is not None
            else default_capabilities(provider_config.type)
        )
        self.context_window = model.context_window
        n_slots = len(pool) if pool is not None else 1
        self.cooldown_names = tuple(f"cooldown:{model.id}#{i}" for i in range(n_slots))
        self.limited = not limits.is_unlimited
        self.per_key = self.limited and limits.per_key
        #: with per_key, option i is slot i's bucket; else one option, the model's bucket
        self.bucket_options: tuple[tuple[Bucket, ...], ...] = ()
        if self.per_key:
            self.bucket_options = tuple(
                (bucket(f"{model.id}#{i}", limits),) for i in range(n_slots)
            )
        elif self.limited:
            self.bucket_options = ((bucket(model.id, limits),),)

    def __repr__(self) -> str:
        return f"Candidate({self.id!r})"

    def label(self, slot: int | None) -> str | None:
        if slot is None or self.pool is None:
            return None
        return self.pool.labels[slot]

    def unavailable_reason(self) -> str | None:
        reason = self.provider.unavailable_reason
        if reason:
            return reason
        if self.provider_config.uses_keys:
            if self.pool is None:
                return f"no API key set for provider {self.provider_name!r}"
            if not self.pool.usable:
                return f"every key of provider {self.provider_name!r} was refused"
        return None

    def lacks(self, needs: frozenset[str]) -> frozenset[str]:
        """The capabilities a request needs that this model does not have."""
        return needs - self.capabilities if needs else needs


def bucket(name: str, spec: LimitSpec) -> Bucket:
    return Bucket(name=name, rpm=spec.rpm, tpm=spec.tpm, rpd=spec.rpd, tpd=spec.tpd)
