"""`llmroute complete`: one request through the router, its text, JSON or routing trace."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmroute._cli_out import Out as _Out
    from llmroute.cli import _Config
    from llmroute.router import Router
    from llmroute.trace import Attempt

__all__ = ["one_line", "print_trace", "run_complete"]


def one_line(text: str) -> str:
    return " ".join(text.split())


async def run_complete(args: argparse.Namespace, cfg: _Config, prompt: str, out: _Out) -> int:
    router = cfg.router(out, args.verbose, cache_dir=args.cache_dir, use_paid_models=args.paid)
    async with router:
        started = time.perf_counter()
        if args.stream:
            result = await _stream(router, args, prompt, out)
        else:
            completion = await router.complete(args.target, prompt, max_tokens=args.max_tokens)
            result = {
                "text": completion.text,
                "model": completion.model,
                "provider": completion.provider,
                "finish_reason": completion.finish_reason,
                "usage": dataclasses.asdict(completion.usage),
                "latency_ms": round(completion.latency_ms, 1),
                "attempts": completion.attempts,
            }
            if not args.json:
                text = completion.text
                out.print(text, end="" if text.endswith("\n") else "\n")
        if args.stream:
            result["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
    attempts: list[Attempt] = result["attempts"]
    if args.json:
        result["attempts"] = [dataclasses.asdict(a) for a in attempts]
        out.print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.trace:
        print_trace(attempts, out, to_stderr=True)
    return 0


async def _stream(
    router: Router, args: argparse.Namespace, prompt: str, out: _Out
) -> dict[str, Any]:
    pieces: list[str] = []
    last = None
    async for chunk in router.stream(args.target, prompt, max_tokens=args.max_tokens):
        if chunk.text:
            pieces.append(chunk.text)
            if not args.json:
                out.write(chunk.text)
        last = chunk
    text = "".join(pieces)
    if not args.json and not text.endswith("\n"):
        out.write("\n")
    model = last.model if last is not None else None
    provider = router.config.models.models[model].provider if model else None
    return {
        "text": text,
        "model": model,
        "provider": provider,
        "finish_reason": last.finish_reason if last is not None else None,
        "usage": dataclasses.asdict(last.usage) if last is not None and last.usage else None,
        "latency_ms": 0.0,
        "attempts": list(last.attempts or []) if last is not None else [],
    }


def print_trace(attempts: Sequence[Attempt], out: _Out, *, to_stderr: bool) -> None:
    rows = [("#", "model", "key", "outcome", "status", "waited", "latency", "error")]
    for i, a in enumerate(attempts, 1):
        rows.append(
            (
                str(i),
                a.model,
                a.key or "-",
                a.outcome,
                str(a.status) if a.status is not None else "-",
                f"{a.waited_s:.2f}s",
                f"{a.latency_ms:.0f} ms",
                one_line(a.error or ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    emit = out.error if to_stderr else out.print
    emit("routing trace:")
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        emit("  " + "  ".join([*cells, row[-1]]).rstrip())
