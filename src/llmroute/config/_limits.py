"""limits.yaml, parsed against the models it limits, with every problem recorded."""

from __future__ import annotations

from typing import Any

from llmroute._hints import did_you_mean
from llmroute.config._checker import Checker, Problems
from llmroute.config._schema import (
    DEFAULT_COMPLETION_ESTIMATE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_WAIT_SECONDS,
    DEFAULT_STATE_PREFIX,
    LimitsConfig,
    LimitSpec,
    ModelsConfig,
    Secret,
    StateConfig,
    Strategy,
)

__all__ = ["LimitsBuilder"]

_TOP_FIELDS = (
    "completion_estimate",
    "defaults",
    "learn_from_headers",
    "models",
    "state",
    "strategy",
)
_STRATEGY_FIELDS = ("deadline_seconds", "max_attempts", "max_wait_seconds", "on_limit")
_LIMIT_FIELDS = ("max_wait_seconds", "on_limit", "per_key", "rpd", "rpm", "tpd", "tpm")
_STATE_FIELDS = ("backend", "path", "prefix", "url")
_ON_LIMIT = ("sleep", "fallback")
_BACKENDS = ("memory", "sqlite", "redis")


class LimitsBuilder(Checker):
    def __init__(
        self, problems: Problems, source: str, lines: dict[str, int], models: ModelsConfig
    ) -> None:
        super().__init__(problems, source, lines)
        self.models = models

    def build(self, raw: Any) -> LimitsConfig:
        top = self.mapping(raw, "(top level)")
        self.fields(top, _TOP_FIELDS, "(top level)")
        models: dict[str, LimitSpec] = {}
        for model_id, body in self.mapping(top.get("models"), "models").items():
            path = f"models.{model_id}"
            model = self.models.models.get(str(model_id))
            if model is None:
                hint = did_you_mean(str(model_id), self.models.models)
                self.fail(path, f"no such model in the models config{hint}")
                continue
            spec = self._spec(body, path)
            provider = self.models.providers.get(model.provider)
            if spec.per_key and provider is not None and not provider.uses_keys:
                self.fail(f"{path}.per_key", f"provider {provider.name!r} has no API keys")
            models[str(model_id)] = spec
        return LimitsConfig(
            defaults=self._spec(top.get("defaults"), "defaults"),
            strategy=self._strategy(top.get("strategy")),
            completion_estimate=self.integer(
                top, "completion_estimate", "(top level)", DEFAULT_COMPLETION_ESTIMATE
            ),
            state=self._state(top.get("state")),
            learn_from_headers=self.boolean(top, "learn_from_headers", "(top level)", True),
            models=models,
        )

    def _strategy(self, body: Any) -> Strategy:
        raw = self.mapping(body, "strategy")
        self.fields(raw, _STRATEGY_FIELDS, "strategy")
        return Strategy(
            on_limit=self.choice(raw, "on_limit", "strategy", _ON_LIMIT, "sleep"),  # type: ignore[arg-type]
            max_wait_seconds=self.number(
                raw, "max_wait_seconds", "strategy", DEFAULT_MAX_WAIT_SECONDS
            ),
            max_attempts=self.integer(
                raw, "max_attempts", "strategy", DEFAULT_MAX_ATTEMPTS, positive=True
            ),
            deadline_seconds=self.number(raw, "deadline_seconds", "strategy", None, positive=True),
        )

    def _state(self, body: Any) -> StateConfig:
        raw = self.mapping(body, "state")
        self.fields(raw, _STATE_FIELDS, "state")
        backend = self.choice(raw, "backend", "state", _BACKENDS, "memory")
        is_text = lambda v: isinstance(v, str) and bool(v)  # noqa: E731
        url = self.typed(raw, "url", "state", is_text, "a URL string", "")
        path = self.typed(raw, "path", "state", is_text, "a file path", None)
        prefix = self.typed(raw, "prefix", "state", is_text, "a string", DEFAULT_STATE_PREFIX)
        if backend == "redis" and not url:
            self.required(raw, "url", "state", "the redis backend needs a url")
        return StateConfig(
            backend=backend,  # type: ignore[arg-type]
            path=path,
            url=Secret(url) if url else None,
            prefix=prefix,
        )

    def _spec(self, body: Any, path: str) -> LimitSpec:
        raw = self.mapping(body, path)
        self.fields(raw, _LIMIT_FIELDS, path)
        return LimitSpec(
            rpm=self.integer(raw, "rpm", path, None),
            tpm=self.integer(raw, "tpm", path, None),
            rpd=self.integer(raw, "rpd", path, None),
            tpd=self.integer(raw, "tpd", path, None),
            per_key=self.boolean(raw, "per_key", path, False),
            on_limit=self.choice(raw, "on_limit", path, _ON_LIMIT, None),  # type: ignore[arg-type]
            max_wait_seconds=self.number(raw, "max_wait_seconds", path, None),
        )
