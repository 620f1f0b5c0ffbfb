"""Malformed config files: each is one `ConfigError` naming the file, the key path and the line,
never a bare Python exception, and never slow (an alias bomb is refused before it expands)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from llmroute.config import load_config
from llmroute.errors import ConfigError

GOOD_MODELS = """\
providers:
  groq:
    type: openai_compatible
    base_url: http://127.0.0.1:9/v1
    api_key: ${GROQ_API_KEY}
models:
  groq/a:
    provider: groq
routes:
  chat: [groq/a]
"""


def _models(extra: str = "", *, replace: tuple[str, str] | None = None) -> str:
    text = GOOD_MODELS if replace is None else GOOD_MODELS.replace(*replace)
    return text + extra


def _bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _deep_map() -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(120)) + "  " * 120 + "x: 1\n"


# (id, models.yaml text, limits.yaml text or None, file that is wrong, key path, line)
# Line None: the problem is with the file as a whole, which has no line to point at.
CASES: list[tuple[str, str, str | None, str, str | None, int | None]] = [
    # -- models.yaml: values ------------------------------------------------------------------
    (
        "dup-model",
        _models(replace=("routes:\n", "  groq/a:\n    provider: groq\nroutes:\n")),
        None,
        "models",
        "models.groq/a",
        9,
    ),
    (
        "dup-field",
        _models(replace=("    provider: groq\n", "    provider: groq\n    provider: x\n")),
        None,
        "models",
        "models.groq/a.provider",
        9,
    ),
    (
        "inf-timeout",
        _models(replace=("    type: openai", "    timeout: .inf\n    type: openai")),
        None,
        "models",
        "providers.groq.timeout",
        3,
    ),
    (
        "nan-timeout",
        _models(replace=("    type: openai", "    timeout: .nan\n    type: openai")),
        None,
        "models",
        "providers.groq.timeout",
        3,
    ),
    (
        "neg-inf-cooldown",
        _models(replace=("    type: openai", "    cooldown_seconds: -.inf\n    type: openai")),
        None,
        "models",
        "providers.groq.cooldown_seconds",
        3,
    ),
    (
        "huge-timeout",
        _models(replace=("    type: openai", "    timeout: 1e300\n    type: openai")),
        None,
        "models",
        "providers.groq.timeout",
        3,
    ),
    (
        "bigint-timeout",
        _models(replace=("    type: openai", "    timeout: 1" + "0" * 400 + "\n    type: openai")),
        None,
        "models",
        "providers.groq.timeout",
        3,
    ),
    (
        "zero-timeout",
        _models(replace=("    type: openai", "    timeout: 0\n    type: openai")),
        None,
        "models",
        "providers.groq.timeout",
        3,
    ),
    (
        "string-retries",
        _models(replace=("    type: openai", "    retries: many\n    type: openai")),
        None,
        "models",
        "providers.groq.retries",
        3,
    ),
    (
        "bool-paid-string",
        _models(replace=("    provider: groq\n", "    provider: groq\n    paid: maybe\n")),
        None,
        "models",
        "models.groq/a.paid",
        9,
    ),
    (
        "unknown-provider-field",
        _models(replace=("    type: openai", "    tiemout: 5\n    type: openai")),
        None,
        "models",
        "providers.groq.tiemout",
        3,
    ),
    (
        "unknown-model-field",
        _models(replace=("    provider: groq\n", "    provider: groq\n    fallback: [groq/a]\n")),
        None,
        "models",
        "models.groq/a.fallback",
        9,
    ),
    ("unknown-top-field", _models("extra: 1\n"), None, "models", "(top level).extra", 11),
    (
        "unknown-type",
        _models(replace=("openai_compatible", "openai_compat")),
        None,
        "models",
        "providers.groq.type",
        3,
    ),
    (
        "missing-type",
        _models(replace=("    type: openai_compatible\n", "")),
        None,
        "models",
        "providers.groq.type",
        2,
    ),
    (
        "missing-base-url",
        _models(replace=("    base_url: http://127.0.0.1:9/v1\n", "")),
        None,
        "models",
        "providers.groq.base_url",
        2,
    ),
    (
        "unset-base-url",
        _models(replace=("http://127.0.0.1:9/v1", "${NOPE_BASE_URL}")),
        None,
        "models",
        "providers.groq.base_url",
        4,
    ),
    (
        "unknown-provider-ref",
        _models(replace=("    provider: groq\n", "    provider: grq\n")),
        None,
        "models",
        "models.groq/a.provider",
        8,
    ),
    (
        "missing-provider-ref",
        _models(replace=("    provider: groq\n", "    paid: false\n")),
        None,
        "models",
        "models.groq/a.provider",
        7,
    ),
    (
        "unknown-route-entry",
        _models(replace=("chat: [groq/a]", "chat: [groq/b]")),
        None,
        "models",
        "routes.chat[0]",
        10,
    ),
    ("route-cycle", _models("  x: [y]\n  y: [x]\n"), None, "models", "routes.", 11),
    (
        "route-not-list",
        _models(replace=("chat: [groq/a]", "chat: groq/a")),
        None,
        "models",
        "routes.chat",
        10,
    ),
    (
        "bad-rotation",
        _models(replace=("    api_key:", "    rotation: {strategy: roundrobin}\n    api_key:")),
        None,
        "models",
        "providers.groq.rotation.strategy",
        5,
    ),
    (
        "both-keys",
        _models(replace=("    api_key: ${GROQ_API_KEY}\n", "    api_key: x\n    api_keys: [y]\n")),
        None,
        "models",
        "providers.groq",
        2,
    ),
    (
        "headers-list",
        _models(replace=("    api_key:", "    headers: [a, b]\n    api_key:")),
        None,
        "models",
        "providers.groq.headers",
        5,
    ),
    (
        "negative-context",
        _models(replace=("    provider: groq\n", "    provider: groq\n    context_window: -5\n")),
        None,
        "models",
        "models.groq/a.context_window",
        9,
    ),
    (
        "bad-capability",
        _models(replace=("    provider: groq\n", "    provider: groq\n    capabilities: [tool]\n")),
        None,
        "models",
        "models.groq/a.capabilities[0]",
        9,
    ),
    (
        "capabilities-string",
        _models(replace=("    provider: groq\n", "    provider: groq\n    capabilities: tools\n")),
        None,
        "models",
        "models.groq/a.capabilities",
        9,
    ),
    (
        "price-inf",
        _models(
            replace=(
                "    provider: groq\n",
                "    provider: groq\n    price: {input_per_mtok: .inf}\n",
            )
        ),
        None,
        "models",
        "models.groq/a.price.input_per_mtok",
        9,
    ),
    (
        "python-tag",
        _models(replace=("    provider: groq\n", "    provider: !!python/object:os.system x\n")),
        None,
        "models",
        "models.groq/a.provider",
        8,
    ),
    ("complex-key", _models("? [a, b]\n: 1\n"), None, "models", "(top level)", 11),
    (
        "malformed-var",
        _models(replace=("${GROQ_API_KEY}", "${GROQ_API_KEY")),
        None,
        "models",
        "providers.groq.api_key",
        5,
    ),
    ("no-models", "providers: {}\n", None, "models", "models", None),
    ("models-list", "providers: {}\nmodels: [a, b]\n", None, "models", "models", 2),
    # -- models.yaml: the file as a whole -----------------------------------------------------
    ("yaml-syntax", "providers:\n  groq: [\n", None, "models", None, 3),
    ("tab-indent", "providers:\n\tgroq: 1\n", None, "models", None, 2),
    ("top-level-list", "- a\n- b\n", None, "models", "(top level)", 1),
    ("alias-bomb", _bomb(), None, "models", "(top level)", 6),
    ("deep-flow", "a: " + "[" * 500 + "]" * 500 + "\n", None, "models", "(top level)", 1),
    ("deep-block", _deep_map(), None, "models", "(top level)", 100),
    # -- limits.yaml --------------------------------------------------------------------------
    (
        "limits-dup",
        GOOD_MODELS,
        "models:\n  groq/a: {rpm: 10}\n  groq/a: {rpm: 100000}\n",
        "limits",
        "models.groq/a",
        3,
    ),
    (
        "limits-inf-wait",
        GOOD_MODELS,
        "strategy:\n  max_wait_seconds: .inf\n",
        "limits",
        "strategy.max_wait_seconds",
        2,
    ),
    ("limits-enum", GOOD_MODELS, "strategy:\n  on_limit: slep\n", "limits", "strategy.on_limit", 2),
    ("limits-float-rpm", GOOD_MODELS, "defaults: {rpm: 1.5}\n", "limits", "defaults.rpm", 1),
    (
        "limits-unknown-model",
        GOOD_MODELS,
        "models:\n  groq/b: {rpm: 1}\n",
        "limits",
        "models.groq/b",
        2,
    ),
    (
        "limits-unknown-field",
        GOOD_MODELS,
        "models:\n  groq/a: {rpn: 1}\n",
        "limits",
        "models.groq/a.rpn",
        2,
    ),
    ("limits-backend", GOOD_MODELS, "state: {backend: reddis}\n", "limits", "state.backend", 1),
    (
        "limits-redis-no-url",
        GOOD_MODELS,
        "state:\n  backend: redis\n  url: ${NO_REDIS_URL}\n",
        "limits",
        "state.url",
        3,
    ),
    (
        "limits-learn-string",
        GOOD_MODELS,
        "learn_from_headers: sometimes\n",
        "limits",
        "(top level).learn_from_headers",
        1,
    ),
    (
        "limits-misspelt-unset",
        GOOD_MODELS,
        "state:\n  backend: memory\n  ulr: ${UNSET_VAR}\n",
        "limits",
        "state.ulr",
        3,
    ),
]


@pytest.mark.parametrize(
    ("models_text", "limits_text", "which", "path", "line"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_malformed_config_is_one_config_error_with_file_path_and_line(
    tmp_path: Path,
    models_text: str,
    limits_text: str | None,
    which: str,
    path: str | None,
    line: int | None,
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(models_text, encoding="utf-8")
    limits = None
    if limits_text is not None:
        limits = tmp_path / "limits.yaml"
        limits.write_text(limits_text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(models, limits, env={"GROQ_API_KEY": "k" * 12})
    assert time.perf_counter() - started < 2.0
    wrong = str(models if which == "models" else limits)
    matching = [p for p in info.value.problems if p.startswith(f"{wrong}: ")]
    assert matching, info.value.problems
    problem = matching[0]
    if path is not None:
        assert problem.startswith(f"{wrong}: {path}"), problem
    if line is not None:
        assert re.search(rf"\bline {line}\b", problem), problem


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_limits_path_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(GOOD_MODELS, encoding="utf-8")
    (tmp_path / "limits.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"limits\.yaml: is a directory"):
        load_config(models, tmp_path / "limits.yaml", env={})


def test_a_file_over_ten_megabytes_is_refused_unread(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_bytes(b"# padding\n" * 1_100_000)
    with pytest.raises(ConfigError, match="larger than 10 MB"):
        load_config(models, None, env={})


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_bytes(b"providers: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(models, None, env={})


def test_a_self_referencing_mapping_is_an_error_not_a_recursion_error() -> None:
    models: dict[str, object] = {"providers": {}}
    models["models"] = models
    with pytest.raises(ConfigError, match="nested deeper than 100"):
        load_config(models, None, env={})


def test_a_misspelt_key_is_reported_whether_or_not_its_variable_is_set(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(_models(replace=("    api_key:", "    api_kee:")), encoding="utf-8")
    for env in ({}, {"GROQ_API_KEY": "set-value-123"}):
        with pytest.raises(ConfigError) as info:
            load_config(models, None, env=env)
        assert "providers.groq.api_kee: unknown field (did you mean 'api_key'" in str(info.value)
        assert "set-value-123" not in str(info.value)


def test_a_value_left_missing_by_an_unset_variable_names_it(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(_models(replace=("http://127.0.0.1:9/v1", "${MY_BASE}")), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"providers\.groq\.base_url: missing: MY_BASE is not set"
    ):
        load_config(models, None, env={})
    loaded = load_config(models, None, env={"MY_BASE": "http://127.0.0.1:9/v1"})
    assert loaded.models.providers["groq"].base_url == "http://127.0.0.1:9/v1"


def test_a_value_from_the_environment_never_appears_in_a_problem(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    text = _models(replace=("    type: openai", "    timeout: ${TIMEOUT_SECRET}\n    type: openai"))
    models.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(models, None, env={"TIMEOUT_SECRET": "hunter2-hunter2"})
    assert "hunter2" not in str(info.value)
    assert "read from the environment" in str(info.value)
