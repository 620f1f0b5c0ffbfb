"""Render a benchmark result (the dict bench/run.py writes as JSON) as markdown and a chart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

CLIENT_NOTES = {
    "llmroute": "`Router.complete`, the router's default HTTP client",
    "httpx": "`httpx.AsyncClient()`, default transport",
    "aiohttp": "`aiohttp.ClientSession()`",
    "litellm": "LiteLLM `Router.acompletion`",
    "httpx_aiohttp": "`httpx.AsyncClient` over `httpx_aiohttp.AiohttpTransport`",
    "aiohttp_client": "`llmroute._transport.AiohttpClient`, used as the adapters use it",
    "llmroute_aiohttp": "`Router(http_client=AiohttpClient())`",
    "llmroute_mock": "`Router.complete` over `httpx.MockTransport`",
    "httpx_mock": "`httpx.AsyncClient` over `httpx.MockTransport`",
}


def fmt(cell: dict[str, Any] | None, digits: int = 0) -> str:
    """`median (min-max)`, or just the median for a single value."""
    if not cell:
        return "—"
    med, lo, hi = cell["median"], cell["min"], cell["max"]
    if cell.get("n", 1) <= 1 or lo == hi:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def _ratio(cell: dict[str, Any], key: str) -> str:
    return fmt(cell.get(key), 2) + ("x" if cell.get(key) else "")


def _status(cell: dict[str, Any]) -> str | None:
    if cell.get("skipped"):
        return f"skipped: {cell['skipped']}"
    if cell.get("error"):
        return f"FAILED: {cell['error']}"
    if cell.get("request_errors"):
        return f"{cell['request_errors']} request errors, first: {cell['first_request_error']}"
    return None


def write_markdown(result: dict[str, Any], path: Path) -> str:
    out: list[str] = []
    for section in _SECTIONS:
        out += section(result)
    text = "\n".join(out)
    path.write_text(text)
    return text


def _header(result: dict[str, Any]) -> list[str]:
    meta, plan = result["meta"], result["plan"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    return [
        f"# llmroute benchmark ({meta['mode']}, {meta['date']})",
        "",
        f"{meta['cpus']} CPUs, Python {meta['python']}, {meta['platform']}; {versions}; "
        f"commit {meta['commit'] or '?'}. {plan['rounds']} round(s) of {plan['seconds']:g} s "
        f"per client run (after a warm-up), every run a fresh process, clients interleaved. "
        "Figures: median (min-max over rounds); ratios are taken within a round, then the "
        f"median. Whole suite: {meta.get('elapsed_s', 0):.0f} s.",
        "",
    ]


def _server_capacity(result: dict[str, Any]) -> list[str]:
    capacity = result.get("server_capacity") or {}
    if not capacity.get("ceiling_req_per_s_one_core"):
        return []
    cells = result["aggregate"]["cells"]
    busiest = max((c["server_busy_max"] or 0 for c in cells), default=0)
    return [
        f"**Fake server** (`bench/server.py`, asyncio, own process): "
        f"{capacity['server_cpu_us_per_req']:.0f} µs CPU per request, a ceiling of "
        f"{capacity['ceiling_req_per_s_one_core']:,.0f} req/s on one core "
        f"({capacity['req_per_s']:,.0f} req/s reached by {capacity['loadgen_processes']} "
        f"bare load generators at {capacity['server_busy']:.0%} of a core). Busiest "
        f"during any client run: {busiest:.0%} of a core, so it is never the bottleneck.",
        "",
    ]


def _litellm(result: dict[str, Any]) -> list[str]:
    return [f"LiteLLM: {result['litellm']}.", ""] if result.get("litellm") else []


_MET = {True: "yes", False: "**no**", None: "—"}


def _targets(result: dict[str, Any]) -> list[str]:
    out = ["## Targets", "", "| target | value | limit | met |", "|---|---:|---:|:---:|"]
    for t in result.get("targets", []):
        value = "—" if t["value"] is None else f"{t['value']:,.2f}"
        out.append(f"| {t['target']} | {value} | {t['limit']:g} | {_MET[t['met']]} |")
    out.append("")
    return out


def _throughput(result: dict[str, Any]) -> list[str]:
    cells = [c for c in result["aggregate"]["cells"] if c["mode"] in ("seq", "conc")]
    clients = _ordered({c["client"] for c in cells})
    concs = sorted({c["concurrency"] for c in cells})
    out = ["## Throughput, latency and client CPU", ""]
    out += [f"- `{c}`: {CLIENT_NOTES.get(c, c)}" for c in clients] + [""]
    for latency in sorted({c["latency_ms"] for c in cells}):
        out += [
            f"### Server latency {latency:g} ms",
            "",
            "| c | client | req/s | vs aiohttp | CPU µs/req | vs httpx | p50 ms | p99 ms |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for conc in concs:
            for client in clients:
                cell = find_cell(cells, mode="seq" if conc == 1 else "conc", latency_ms=latency,
                             concurrency=conc, client=client)  # fmt: skip
                if cell is not None:
                    out.append(_throughput_row(cell))
        out.append("")
    return out


def _throughput_row(cell: dict[str, Any]) -> str:
    lead = f"| {cell['concurrency']} | {cell['client']} |"
    status = _status(cell)
    if status and not cell.get("rps"):
        return f"{lead} {status} | | | | | |"
    return (
        f"{lead} {fmt(cell.get('rps'))} | "
        f"{_ratio(cell, 'rps_vs_aiohttp')} | {fmt(cell.get('cpu_us_per_req'))} | "
        f"{_ratio(cell, 'cpu_us_per_req_vs_httpx')} | {fmt(cell.get('p50_ms'), 2)} | "
        f"{fmt(cell.get('p99_ms'), 2)} |"
    )


def _routing_alone(result: dict[str, Any]) -> list[str]:
    mock = [c for c in result["aggregate"]["cells"] if c["mode"].startswith("mock-")]
    if not mock:
        return []
    out = [
        "## Routing work alone (`httpx.MockTransport`, no network)",
        "",
        "| c | client | CPU µs/req | vs httpx_mock | req/s |",
        "|---:|---|---:|---:|---:|",
    ]
    for cell in sorted(mock, key=lambda c: (c["concurrency"], c["client"])):
        out.append(
            f"| {cell['concurrency']} | {cell['client']} | "
            f"{_status(cell) or fmt(cell.get('cpu_us_per_req'))} | "
            f"{_ratio(cell, 'cpu_us_per_req_vs_httpx_mock')} | {fmt(cell.get('rps'))} |"
        )
    for conc in sorted({c["concurrency"] for c in mock}):
        out += _router_overhead(mock, conc)
    out.append("")
    return out


def _router_overhead(mock: list[dict[str, Any]], conc: int) -> list[str]:
    ours = find_cell(mock, concurrency=conc, client="llmroute_mock")
    base = find_cell(mock, concurrency=conc, client="httpx_mock")
    if not (ours and base and ours.get("cpu_us_per_req") and base.get("cpu_us_per_req")):
        return []
    extra = ours["cpu_us_per_req"]["median"] - base["cpu_us_per_req"]["median"]
    return [
        "",
        f"At c={conc} the router adds {extra:,.0f} µs of CPU per request over "
        "the same httpx call (resolve, gate, limiter, key choice, request body, "
        "parsing, trace, usage).",
    ]


def _streaming(result: dict[str, Any]) -> list[str]:
    streams = [c for c in result["aggregate"]["cells"] if c["mode"] == "stream"]
    if not streams:
        return []
    out = [
        "## Streaming: time to first chunk",
        "",
        "| latency ms | client | first chunk p50 ms | p99 ms | vs httpx | whole stream p50 ms |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for cell in sorted(streams, key=lambda c: (c["latency_ms"], _rank(c["client"]))):
        out.append(_stream_row(cell))
    out.append("")
    return out


def _stream_row(cell: dict[str, Any]) -> str:
    lead = f"| {cell['latency_ms']:g} | {cell['client']} |"
    status = _status(cell)
    if status and not cell.get("ttfc_p50_ms"):
        return f"{lead} {status} | | | |"
    return (
        f"{lead} {fmt(cell.get('ttfc_p50_ms'), 2)} "
        f"| {fmt(cell.get('ttfc_p99_ms'), 2)} | {_ratio(cell, 'ttfc_p50_ms_vs_httpx')} | "
        f"{fmt(cell.get('total_p50_ms'), 2)} |"
    )


def _imports(result: dict[str, Any]) -> list[str]:
    imports = result.get("imports") or {}
    if not imports:
        return []
    out = [
        "## Import cost (fresh interpreter each)",
        "",
        "| statement | wall ms | CPU ms | peak RSS MB | modules loaded |",
        "|---|---:|---:|---:|---:|",
    ]
    # The import-time breakdown shares the table's dict but is a list, not a row.
    out += [_import_row(s, row) for s, row in imports.items() if isinstance(row, dict)]
    top = imports.get("top_imports_from_llmroute_import_Router") or []
    if top:
        out += [
            "",
            "`-X importtime` self time of `from llmroute import Router` by top-level "
            "package (ms): " + ", ".join(f"{t['package']} {t['self_ms']:.1f}" for t in top) + ".",
        ]
    out.append("")
    return out


def _import_row(statement: str, row: dict[str, Any]) -> str:
    if row.get("error") and not row.get("wall_ms"):
        return f"| `{statement}` | FAILED: {row['error']} | | | |"
    return (
        f"| `{statement}` | {fmt(row.get('wall_ms'), 1)} | {fmt(row.get('cpu_ms'), 1)} | "
        f"{fmt(row.get('maxrss_mb'), 1)} | {row.get('modules') or '—'} |"
    )


def _limiter(result: dict[str, Any]) -> list[str]:
    limiter = result.get("limiter") or {}
    out = ["## Limiter (`MemoryStore.acquire` / `settle`, as the router calls them)", ""]
    if not limiter.get("cost"):
        return [*out, f"Not measured: {limiter.get('skipped') or limiter.get('error')}", ""]
    out += ["| models | acquire µs | acquire + settle µs |", "|---:|---:|---:|"]
    out += [
        f"| {row['models']:,} | {row['acquire_us']:.2f} | {row['acquire_settle_us']:.2f} |"
        for row in limiter["cost"]
    ]
    out += _limiter_memory(limiter)
    out.append("")
    return out


def _limiter_memory(limiter: dict[str, Any]) -> list[str]:
    memory = limiter["memory"]
    points = memory["points"]
    if not points:
        return []
    first, last = points[0], points[-1]
    growth = memory.get("blocks_per_admission_after_warmup")
    return [
        "",
        f"Memory over {memory['admissions']:,} admissions on one model "
        f"(rpm {limiter['minute_rpm']:,}, so the minute window holds "
        f"{limiter['minute_rpm']:,} entries once warm): allocated blocks "
        f"{first['blocks']:,} after {first['admissions']:,}, {last['blocks']:,} "
        f"after {last['admissions']:,}"
        + (f" ({growth:.5f} blocks per admission)" if growth is not None else "")
        + f"; RSS {first['rss_mb']:.1f} MB → {last['rss_mb']:.1f} MB.",
    ]


def _micro(result: dict[str, Any]) -> list[str]:
    micro = (result.get("micro") or {}).get("us_per_op")
    if not micro:
        return []
    return [
        "## httpx's own per-request objects (µs of CPU per operation)",
        "",
        "| operation | µs |",
        "|---|---:|",
        *(f"| {name} | {value:.1f} |" for name, value in micro.items()),
        "",
    ]


def _chart_link(result: dict[str, Any]) -> list[str]:
    if not result.get("chart"):
        return []
    return [f"![req/s and client CPU per request by concurrency]({result['chart']})", ""]


_SECTIONS: tuple[Callable[[dict[str, Any]], list[str]], ...] = (
    _header,
    _server_capacity,
    _litellm,
    _targets,
    _throughput,
    _routing_alone,
    _streaming,
    _imports,
    _limiter,
    _micro,
    _chart_link,
)


def write_chart(result: dict[str, Any], path: Path) -> str | None:
    """req/s and client CPU per request by concurrency, one line per client."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in result["aggregate"]["cells"] if c["mode"] in ("seq", "conc")]
    latencies = sorted({c["latency_ms"] for c in cells})
    concs = sorted({c["concurrency"] for c in cells})
    clients = _ordered({c["client"] for c in cells})
    fig, axes = plt.subplots(
        2, len(latencies), figsize=(6 * len(latencies), 8), squeeze=False, sharex=True
    )
    for col, latency in enumerate(latencies):
        for row, (metric, label) in enumerate(_CHART_METRICS):
            ax = axes[row][col]
            at_latency = [c for c in cells if c["latency_ms"] == latency]
            for client in clients:
                _plot_client(ax, at_latency, client, concs, metric)
            ax.set_yscale("log")
            ax.set_title(f"{label}, server latency {latency:g} ms")
            ax.set_xticks(range(len(concs)), [f"c={c}" for c in concs])
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"llmroute benchmark ({result['meta']['mode']}, {result['meta']['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


_CHART_METRICS = (("rps", "req/s"), ("cpu_us_per_req", "client CPU µs / request"))
#: drawn solid; the transport-study clients are dashed
_MAIN_CLIENTS = ("llmroute", "httpx", "aiohttp", "litellm")


def _plot_client(
    ax: Any, cells: list[dict[str, Any]], client: str, concs: list[int], metric: str
) -> None:
    """One client's medians by concurrency, with min-max as error bars."""
    xs, ys, lo, hi = [], [], [], []
    for i, conc in enumerate(concs):
        cell = find_cell(cells, concurrency=conc, client=client)
        if cell and cell.get(metric):
            xs.append(i)
            ys.append(cell[metric]["median"])
            lo.append(cell[metric]["median"] - cell[metric]["min"])
            hi.append(cell[metric]["max"] - cell[metric]["median"])
    if xs:
        style = "-" if client in _MAIN_CLIENTS else "--"
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", linestyle=style, label=client, capsize=3)


_ORDER = ["llmroute", "httpx", "aiohttp", "litellm", "httpx_aiohttp", "aiohttp_client"]


def _rank(client: str) -> int:
    return _ORDER.index(client) if client in _ORDER else len(_ORDER)


def _ordered(clients: set[str]) -> list[str]:
    return sorted(clients, key=lambda c: (_rank(c), c))


def find_cell(cells: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for cell in cells:
        if all(cell.get(k) == v for k, v in match.items()):
            return cell
    return None
