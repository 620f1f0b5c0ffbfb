"""Render a quota benchmark result (the dict bench/quota.py writes as JSON): a markdown
table and a PNG chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_results(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quota.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "quota.md").write_text(markdown(result))
    try:
        chart(result, out_dir / "quota.png")
    except ImportError:
        print("matplotlib is not installed: no chart", file=sys.stderr)


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"# Quota benchmark ({meta['date']})",
        "",
        f"{meta['cpus']} CPUs, Python {meta['python']}; commit {meta['commit'] or '?'}. "
        f"A backlog sent at once through the router to the fake provider in quota mode over "
        f"loopback. Provider windows: rpm {meta['rpm']} (per key for Gemini); fake latency "
        f"{meta['latency_ms']:g} ms real. Time scale x{meta['scale']:g} (a provider minute "
        f"in {60 / meta['scale']:g} s): every time below is in provider seconds, except the "
        "real-time rows. Goodput = theoretical minimum makespan / makespan. The fake "
        f"forgives an arrival up to {meta['grace_ms']:g} ms (real) early at a window's edge: "
        "over loopback, in one event loop, the order of arrivals jitters by a scheduling "
        "slice, which the time scale multiplies (`--grace-ms 0` for the exact fake).",
        "",
        "| scenario | client | clock | requests | failed | remote 429s | makespan s "
        "| minimum s | goodput | requests that waited | mean wait s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["scenarios"]:
        mean_wait = row["waited_total_s"] / row["waited_requests"] if row["waited_requests"] else 0
        lines.append(
            f"| {row['title']} | {row['client']} | {row['clock']} | {row['requests']} "
            f"| {row['failed']} | {row['remote_429']} | {row['makespan_s']:.1f} "
            f"| {row['minimum_s']:.1f} | {row['goodput']:.2f} | {row['waited_requests']} "
            f"| {mean_wait:.1f} |"
        )
    parse = result["header_parse"]
    lines += [
        "",
        "Reading the rate-limit headers of one answer (best of 5): "
        f"{parse['aiohttp_headers_us']:.2f} µs with Groq's headers and "
        f"{parse['aiohttp_no_headers_us']:.2f} µs without, on the router's own client "
        f"(aiohttp headers); {parse['httpx_headers_us']:.2f} / "
        f"{parse['httpx_no_headers_us']:.2f} µs on `httpx.Headers`. A full parse, done only "
        f"when a window is spent or the limits change: {parse['full_parse_us']:.2f} µs.",
        "",
    ]
    for row in result["scenarios"]:
        if row["first_error"]:
            lines.append(f"- {row['title']} ({row['client']}): first error: {row['first_error']}")
    notes = result.get("notes") or []
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["scenarios"]
    labels = [
        f"{r['title']}\n{r['client']}"
        + (" (real time)" if "real" in r["clock"] else "")
        + (" (exact fake)" if "exact" in r["clock"] else "")
        for r in rows
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.55 * len(rows) + 1.8))
    ys = range(len(rows))
    left.barh(ys, [r["goodput"] for r in rows], color="#4c72b0")
    left.axvline(1 / 1.05, color="#55a868", linestyle="--", linewidth=1)
    left.set_yticks(list(ys), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlim(0, 1.05)
    left.set_xlabel("goodput (theoretical minimum / makespan; 1 is the best possible)")
    right.barh(ys, [r["remote_429"] for r in rows], color="#c44e52")
    right.set_yticks(list(ys), [""] * len(rows))
    right.invert_yaxis()
    right.set_xlabel("remote 429s")
    for y, r in zip(ys, rows, strict=True):
        right.text(r["remote_429"], y, f" {r['remote_429']}", va="center", fontsize=8)
    fig.suptitle("Backlog against a quota-enforcing fake provider")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
