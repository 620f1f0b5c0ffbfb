"""From raw client runs to the figures the report shows: one cell per scenario and client
(medians with min-max over rounds, within-round ratios to the raw clients), and the
targets those figures are held to."""

from __future__ import annotations

from typing import Any

from harness import summary
from plan import Plan
from report import find_cell

#: what every run may report, summarised over rounds
METRICS = (
    "rps",
    "p50_ms",
    "p99_ms",
    "cpu_us_per_req",
    "ttfc_p50_ms",
    "ttfc_p99_ms",
    "total_p50_ms",
    "maxrss_mb",
)
#: the raw clients every other client is compared with, on these metrics
RATIO_BASES = ("httpx", "aiohttp", "httpx_mock")
RATIO_METRICS = ("rps", "cpu_us_per_req", "ttfc_p50_ms")

Run = dict[str, Any]
#: (mode, latency_ms, concurrency, client)
CellKey = tuple[Any, ...]


def aggregate(runs: list[Run], plan: Plan) -> dict[str, Any]:
    """Medians (min-max) per scenario and client, and within-round ratios to raw clients."""
    by_key: dict[CellKey, list[Run]] = {}
    for run in runs:
        key = (run["mode"], run["latency_ms"], run["concurrency"], run["client"])
        by_key.setdefault(key, []).append(run)
    return {"cells": [_cell(key, results, by_key) for key, results in by_key.items()]}


def _cell(key: CellKey, results: list[Run], by_key: dict[CellKey, list[Run]]) -> dict[str, Any]:
    mode, latency, conc, client = key
    ok = [r for r in results if "error" not in r and "skipped" not in r]
    return {
        "mode": mode,
        "latency_ms": latency,
        "concurrency": conc,
        "client": client,
        **_outcome(results, ok),
        **_summaries(ok),
        **_ratios(key, ok, by_key),
    }


def _outcome(results: list[Run], ok: list[Run]) -> dict[str, Any]:
    """How the runs went: counts, the first failure of each kind, how busy the server got."""
    return {
        "runs": len(results),
        "ok": len(ok),
        "skipped": next((r["skipped"] for r in results if "skipped" in r), None),
        "error": next((r["error"] for r in results if "error" in r), None),
        "request_errors": sum(r.get("errors", 0) for r in ok),
        "first_request_error": next((r["first_error"] for r in ok if r.get("first_error")), None),
        "server_busy_max": max((r["server_busy"] or 0 for r in results), default=None),
    }


def _summaries(ok: list[Run]) -> dict[str, Any]:
    figures = {}
    for metric in METRICS:
        values = [r[metric] for r in ok if r.get(metric) is not None]
        if values:
            figures[metric] = summary(values)
    return figures


def _ratios(key: CellKey, ok: list[Run], by_key: dict[CellKey, list[Run]]) -> dict[str, Any]:
    *scenario, client = key
    figures = {}
    for base in RATIO_BASES:
        if client == base:
            continue
        partners = by_key.get((*scenario, base), [])
        for metric in RATIO_METRICS:
            ratios = _within_round_ratios(ok, partners, metric)
            if ratios:
                figures[f"{metric}_vs_{base}"] = summary(ratios)
    return figures


def _within_round_ratios(runs: list[Run], partners: list[Run], metric: str) -> list[float]:
    """Each run's figure over the same round's figure of the base client."""
    ratios = []
    for run in runs:
        partner = next(
            (p for p in partners if p.get("round") == run.get("round") and p.get(metric)), None
        )
        if partner is not None and run.get(metric) is not None:
            ratios.append(run[metric] / partner[metric])
    return ratios


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    cells = result["aggregate"]["cells"]
    return [
        *_sequential_cpu_targets(cells),
        *_concurrent_rps_targets(cells),
        *_import_targets(result.get("imports") or {}),
        *_limiter_targets(result.get("limiter") or {}),
    ]


def _target(name: str, value: float | None, limit: float, higher_is_better: bool) -> dict[str, Any]:
    met = None if value is None else (value >= limit if higher_is_better else value <= limit)
    return {"target": name, "value": value, "limit": limit, "met": met}


def _median(figure: dict[str, Any] | None) -> float | None:
    return figure["median"] if figure else None


def _sequential_cpu_targets(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for latency in sorted({c["latency_ms"] for c in cells if c["mode"] == "seq"}):
        cell = find_cell(cells, mode="seq", latency_ms=latency, client="llmroute")
        out.append(
            _target(
                f"sequential CPU/request, llmroute / httpx ({latency:g} ms)",
                _median(cell.get("cpu_us_per_req_vs_httpx") if cell else None),
                1.15,
                False,
            )
        )
    return out


def _concurrent_rps_targets(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        _target(
            f"req/s at c={cell['concurrency']}, llmroute / aiohttp ({cell['latency_ms']:g} ms)",
            _median(cell.get("rps_vs_aiohttp")),
            0.90,
            True,
        )
        for cell in cells
        if cell["client"] == "llmroute" and cell["mode"] == "conc"
    ]


def _import_targets(imports: dict[str, Any]) -> list[dict[str, Any]]:
    httpx_ms = (imports.get("import httpx") or {}).get("wall_ms")
    out = []
    for statement in ("import llmroute", "from llmroute import Router"):
        entry = imports.get(statement) or {}
        if httpx_ms and entry.get("wall_ms"):
            out.append(
                _target(
                    f"`{statement}` wall / `import httpx`",
                    entry["wall_ms"]["median"] / httpx_ms["median"],
                    1.5,
                    False,
                )
            )
        if entry.get("maxrss_mb"):
            out.append(
                _target(f"`{statement}` peak RSS, MB", entry["maxrss_mb"]["median"], 45.0, False)
            )
    return out


def _limiter_targets(limiter: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _target(
            f"limiter acquire+settle, {row['models']:,} models, us",
            row["acquire_settle_us"],
            5.0,
            False,
        )
        for row in limiter.get("cost", [])
    ]
