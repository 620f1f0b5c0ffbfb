"""The benchmark suite still runs end to end (figures are reported, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_bench_smoke_writes_the_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "latest.md").read_text()
    assert "| c | client | req/s |" in table
    for client in ("llmroute", "httpx", "aiohttp"):
        assert f"| {client} |" in table
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["meta"]["mode"] == "smoke"
    assert result["runs"]
