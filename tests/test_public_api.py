from __future__ import annotations

import subprocess
import sys

import llmroute
import llmroute.errors
import llmroute.testing


def test_root_exports_match_all() -> None:
    for name in ("Router", "Completion", "Chunk", "Attempt", "Usage", "ModelUsage"):
        assert name in llmroute.__all__
        assert getattr(llmroute, name).__name__ == name
    for name in llmroute.__all__:
        assert hasattr(llmroute, name), name
    assert set(llmroute.__all__) <= set(dir(llmroute))
    assert isinstance(llmroute.__version__, str)


def test_every_error_is_exported_from_the_root() -> None:
    for name in llmroute.errors.__all__:
        assert name in llmroute.__all__
        assert getattr(llmroute, name) is getattr(llmroute.errors, name)


def test_error_tree() -> None:
    e = llmroute.errors
    assert issubclass(e.ConfigError, e.LLMRouteError)
    assert issubclass(e.UnknownTargetError, e.LLMRouteError)
    for name in (
        "PaidModelBlockedError",
        "ProviderUnavailableError",
        "ProviderError",
        "RoutingError",
    ):
        assert issubclass(getattr(e, name), e.RequestError)
    assert issubclass(e.RateLimitedError, e.RoutingError)
    for name in e.__all__:
        assert hasattr(e, name)


def test_testing_exports() -> None:
    for name in llmroute.testing.__all__:
        assert hasattr(llmroute.testing, name)


def test_import_is_light() -> None:
    # `import llmroute` must not drag in the HTTP stack, YAML or tenacity.
    code = (
        "import sys, llmroute; "
        "print(','.join(m for m in ('httpx', 'aiohttp', 'yaml', 'tenacity') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_router_import_loads_no_yaml_http_or_init() -> None:
    # YAML loads with the first file read, the HTTP stack with the first provider, and
    # `llmroute init`'s machinery only when asked for: none on the way to a Router.
    heavy = ("httpx", "aiohttp", "yaml", "tenacity", "llmroute.config._init")
    code = (
        "import sys; from llmroute import Router; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
