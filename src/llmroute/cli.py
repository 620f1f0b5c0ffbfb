"""The `llmroute` command: set up a project, check a config, run or explain one request,
inspect key pools, run the demo or the fake provider.

    llmroute init [DIR] [--force | --merge]      write (or upgrade) the shipped catalogue
    llmroute check [--config DIR] [--strict]      validate config/models.yaml + limits.yaml
    llmroute complete TARGET PROMPT [--stream] [--json] [--trace]
    llmroute explain TARGET PROMPT                what a request would meet now; sends nothing
    llmroute keys [--config DIR] [--cache-dir .cache]
    llmroute fake-server [--port N]               the fake provider on loopback, until Ctrl-C
    llmroute demo [--requests N] [--seed S]
    llmroute --version

Without `--config`, a directory with no config/models.yaml uses the catalogue shipped with
llmroute. Exit status: 0 on success, 1 when the config is broken or a request fails (one line
on stderr, never a traceback, whatever the input), 2 for a usage error. Nothing printed ever
contains an API key: the commands build a `Router` and print only slot labels and counts, and
every line goes through a redactor that knows the configured keys as a second line of defence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from llmroute._cli_complete import one_line as _one_line
from llmroute._cli_out import SECRET_NAME as _SECRET_NAME
from llmroute._cli_out import Out as _Out
from llmroute._cli_out import setup_logging as _setup_logging
from llmroute.errors import ConfigError, LLMRouteError, RequestError

if TYPE_CHECKING:
    from llmroute.router import Router

__all__ = ["main"]

_EXIT_USAGE: Final = 2
_EXIT_INTERRUPTED: Final = 130


class _Usage(Exception):
    """A usage error found after parsing (an empty prompt): exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `llmroute` command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = _Out(sys.stdout, sys.stderr)
    _setup_logging(args.verbose, out)
    try:
        status: int = args.run(args, out)
        sys.stdout.flush()
        return status
    except ConfigError as exc:
        out.error("llmroute: configuration problem" + ("s:" if len(exc.problems) > 1 else ":"))
        for problem in exc.problems:
            out.error(f"  {problem}")
        return 1
    except RequestError as exc:
        out.error(f"llmroute: {type(exc).__name__}: {_one_line(str(exc))}")
        if getattr(args, "trace", False) and exc.attempts:
            from llmroute._cli_complete import print_trace

            print_trace(exc.attempts, out, to_stderr=True)
        return 1
    except LLMRouteError as exc:
        out.error(f"llmroute: {type(exc).__name__}: {_one_line(str(exc))}")
        return 1
    except _Usage as exc:
        parser.exit(_EXIT_USAGE, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        out.error("llmroute: interrupted")
        return _EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`llmroute check | head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        # Whatever the input, one line and never a traceback (which could show a secret).
        out.error(
            f"llmroute: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
            "(please report this; -vv shows more)"
        )
        logging.getLogger("llmroute").debug("unexpected error", exc_info=args.verbose > 1)
        return 1


# -- argument parsing ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmroute",
        description=(
            "In-process LLM router: paid-model gate, exact rate limits, fallback chains and "
            "API key rotation. These commands read config/models.yaml, config/limits.yaml "
            "and .env from the current directory unless told otherwise."
        ),
        epilog=(
            "Exit status: 0 ok, 1 configuration problem or failed request, 2 usage error. "
            "`llmroute COMMAND --help` for each command."
        ),
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the routing log on stderr (-v: one line per request, -vv: every decision)",
    )
    parser.add_argument("--version", action="version", version=f"llmroute {_version()}")
    # Accepted after the command name too (`llmroute complete -v ...`); SUPPRESS keeps a
    # subcommand without it from resetting what was given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        metavar="DIR",
        default=None,
        help="directory holding models.yaml and limits.yaml (default: ./config, or the "
        "catalogue shipped with llmroute when ./config/models.yaml does not exist)",
    )
    config.add_argument(
        "--env-file",
        metavar="FILE",
        default=".env",
        help="dotenv file read for ${VAR} values; never overrides the environment "
        "(default: .env, a missing file is fine)",
    )
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=".cache",
        help="where key rotation indexes are kept (default: .cache)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check",
        parents=[common, config],
        help="validate the config and show what is usable",
        description=(
            "Validate models.yaml and limits.yaml and list providers (with how many keys are "
            "set, never the keys), models, routes, the paid gate and what is unavailable and "
            "why, what to do first. Exit 1 on a configuration problem, 0 when only "
            "credentials are missing (with --strict: 1 when a route has no usable candidate)."
        ),
    )
    check.add_argument(
        "--strict", action="store_true", help="exit 1 when a route has no usable candidate now"
    )
    check.set_defaults(run=_check)

    complete = commands.add_parser(
        "complete",
        parents=[common, config, cache],
        help="send one request through the router and print the answer",
        description=(
            "Send one request to TARGET (a route name or a model id) and print the text. "
            "A failed request prints one line on stderr and exits 1."
        ),
    )
    complete.add_argument("target", metavar="TARGET", help="a route (e.g. chat) or a model id")
    complete.add_argument("prompt", metavar="PROMPT", help="the prompt; - reads it from stdin")
    complete.add_argument("--stream", action="store_true", help="print the text as it arrives")
    complete.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (text, model, provider, finish_reason, usage, latency_ms, "
        "attempts) instead of the text; with --stream it is printed at the end",
    )
    complete.add_argument(
        "--trace", action="store_true", help="print the routing trace (every attempt) on stderr"
    )
    complete.add_argument(
        "--max-tokens", type=_positive_int, metavar="N", help="cap on the reply's tokens"
    )
    complete.add_argument(
        "--paid",
        action="store_true",
        default=None,
        help="allow paid models for this request (as USE_PAID_MODELS=true)",
    )
    complete.set_defaults(run=_complete)

    explain = commands.add_parser(
        "explain",
        parents=[common, config, cache],
        help="show what a request would meet now, without sending it",
        description=(
            "Resolve TARGET to its chain and say, for each candidate, what a request sent now "
            "would meet: skipped and why, the key slot, a local wait or a cooldown. Nothing is "
            "sent and nothing is charged."
        ),
    )
    explain.add_argument("target", metavar="TARGET", help="a route (e.g. chat) or a model id")
    explain.add_argument("prompt", metavar="PROMPT", help="the prompt; - reads it from stdin")
    explain.add_argument(
        "--paid", action="store_true", default=None, help="as if USE_PAID_MODELS were true"
    )
    explain.set_defaults(run=_explain)

    _setup_commands(commands, common, config)

    keys = commands.add_parser(
        "keys",
        parents=[common, config, cache],
        help="show each key pool's rotation index, cooling and disabled keys",
        description=(
            "For each provider with an api_keys pool: keys set, rotation strategy, the "
            "persisted index ({cache-dir}/{provider}.keyidx) and the next key, cooling and "
            "disabled keys. Keys are shown as slot labels ({provider}#{i}) only."
        ),
    )
    keys.set_defaults(run=_keys)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="watch the router work against a built-in fake provider (no keys, no network)",
        description=(
            "Start a fake OpenAI-compatible and Gemini provider on 127.0.0.1, route a few "
            "dozen concurrent requests through a real Router and show each one as it "
            "finishes: key rotation on 429, cooldowns, limiter waits, fallbacks, a retried "
            "5xx, the paid gate, then a usage summary."
        ),
    )
    demo.add_argument(
        "--requests", type=_positive_int, default=36, metavar="N", help="how many (default 36)"
    )
    demo.add_argument("--seed", type=int, default=7, help="seed for the fake latencies (default 7)")
    demo.set_defaults(run=_demo)
    return parser


def _setup_commands(
    commands: Any, common: argparse.ArgumentParser, config: argparse.ArgumentParser
) -> None:
    init = commands.add_parser(
        "init",
        parents=[common],
        help="write the shipped catalogue and .env.example into a project (or upgrade it)",
        description=(
            "Write config/models.yaml, config/limits.yaml, config/READ_ME_KEY_ROTATION.md and "
            ".env.example into DIR. Existing files are never overwritten without --force. "
            "--merge upgrades an existing project instead: a timestamped backup of each file "
            "it changes, then the catalogue's new providers, models, routes and limits and "
            ".env's missing variables are added; your entries and comments stay as written "
            "and models the catalogue marks as retired are listed."
        ),
    )
    init.add_argument("directory", metavar="DIR", nargs="?", default=".", help="default: .")
    mode = init.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="overwrite existing files")
    mode.add_argument("--merge", action="store_true", help="upgrade, keeping every edit")
    init.set_defaults(run=_init)

    fake = commands.add_parser(
        "fake-server",
        parents=[common, config],
        help="run the fake provider on 127.0.0.1 so your own code runs with no key",
        description=(
            "Serve fake OpenAI-compatible and Gemini APIs on 127.0.0.1 until Ctrl-C, and print "
            "the environment lines (GROQ_BASE_URL=... and fake keys) that point the "
            "catalogue's providers at it. Prose goes to stderr, the lines to stdout."
        ),
    )
    fake.add_argument(
        "--port", type=_port, default=0, metavar="N", help="port to listen on (default: any free)"
    )
    fake.set_defaults(run=_fake_server)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def _version() -> str:
    from llmroute import __version__

    return str(__version__)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


@contextlib.contextmanager
def _no_index_warnings(verbose: int) -> Iterator[None]:
    """Build a router without its "key index missing or corrupt" warnings (unless -v).

    `keys` reads the file itself and reports its state in its table; for `check` and a
    one-off `complete` the warning would only alarm on a fresh clone, where it is expected.
    """
    log = logging.getLogger("llmroute.keys.persist")
    level = log.level
    if not verbose:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


# -- building a router from a config directory -----------------------------------------------


class _Config:
    """The paths of one config directory and what the CLI reads there besides the Router.

    `directory` None means ./config, or the shipped catalogue when ./config/models.yaml is
    missing (as `Router()` does); a directory given with --config must hold models.yaml.
    """

    def __init__(self, directory: str | None, env_file: str) -> None:
        from llmroute.config import shipped_root

        self.shipped = directory is None and not Path("config/models.yaml").exists()
        self.dir = shipped_root() / "config" if self.shipped else Path(directory or "config")
        self.models = self.dir / "models.yaml"
        limits = self.dir / "limits.yaml"
        # a limits.yaml that exists but is no file (a directory) is the loader's to report
        self.limits: Path | None = limits if limits.exists() else None
        self.env_file = Path(env_file)

    def router(self, out: _Out, verbose: int, **kwargs: Any) -> Router:
        from llmroute.router import Router

        if not self.models.is_file():
            what = "is not a file" if self.models.exists() else "file not found"
            raise ConfigError(
                [
                    f"{self.models}: {what} (run llmroute in your project's directory, "
                    "pass --config DIR, or write one with `llmroute init`)"
                ]
            )
        with _no_index_warnings(verbose):
            router = Router(self.models, self.limits, env_file=self.env_file, **kwargs)
        out.learn(router.config.secrets)
        out.learn(
            v for p in router.config.models.providers.values() for k, v in p.env.items()
            if _SECRET_NAME.search(k)
        )  # fmt: skip
        return router

    def raw_providers(self) -> Mapping[str, Mapping[str, Any]]:
        """The providers section as written (before `${VAR}` interpolation): which variables
        each one reads and how many keys it lists."""
        from llmroute.config import YamlProblem, read_yaml

        try:
            data = read_yaml(self.models).data
        except YamlProblem:
            return {}
        providers = data.get("providers") if isinstance(data, Mapping) else None
        if not isinstance(providers, Mapping):
            return {}
        return {str(k): v for k, v in providers.items() if isinstance(v, Mapping)}


# -- llmroute check --------------------------------------------------------------------------


def _check(args: argparse.Namespace, out: _Out) -> int:
    from llmroute._cli_check import report

    cfg = _Config(args.config, args.env_file)
    router = cfg.router(out, args.verbose, cache_dir=".cache")
    try:
        dead = report(router, cfg, out)
    finally:
        router.close()
    return 1 if args.strict and dead else 0


# -- llmroute complete -----------------------------------------------------------------------


def _prompt_of(args: argparse.Namespace) -> str:
    """The PROMPT argument, or standard input for `-`; a usage error when it is empty."""
    prompt: str = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise _Usage("the prompt is empty" + (" (nothing on stdin)" if args.prompt == "-" else ""))
    return prompt


def _complete(args: argparse.Namespace, out: _Out) -> int:
    prompt = _prompt_of(args)
    from llmroute._cli_complete import run_complete

    cfg = _Config(args.config, args.env_file)
    return asyncio.run(run_complete(args, cfg, prompt, out))


# -- llmroute explain, init, fake-server --------------------------------------------------


def _explain(args: argparse.Namespace, out: _Out) -> int:
    prompt = _prompt_of(args)
    cfg = _Config(args.config, args.env_file)
    # explain is synchronous and sends nothing: no event loop needed here
    with cfg.router(out, args.verbose, cache_dir=args.cache_dir, use_paid_models=args.paid) as r:
        explanation = r.explain(args.target, prompt)
    out.print(str(explanation))
    return 0


def _init(args: argparse.Namespace, out: _Out) -> int:
    from llmroute._cli_setup import run_init

    return run_init(Path(args.directory), force=args.force, merge=args.merge, out=out)


def _fake_server(args: argparse.Namespace, out: _Out) -> int:
    from llmroute._cli_setup import run_fake_server

    return run_fake_server(args.port, _Config(args.config, args.env_file).raw_providers(), out)


# -- llmroute keys ---------------------------------------------------------------------------


def _keys(args: argparse.Namespace, out: _Out) -> int:
    from llmroute._cli_keys import run_keys

    cfg = _Config(args.config, args.env_file)
    return asyncio.run(run_keys(args, cfg, out))


# -- llmroute demo ---------------------------------------------------------------------------


def _demo(args: argparse.Namespace, out: _Out) -> int:
    from llmroute._demo import run_demo

    return asyncio.run(run_demo(requests=args.requests, seed=args.seed, out=out.stdout))


if __name__ == "__main__":
    raise SystemExit(main())
