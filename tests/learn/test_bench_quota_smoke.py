"""The quota benchmark still runs end to end (figures are reported, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

QUOTA = Path(__file__).resolve().parent.parent.parent / "bench" / "quota.py"


def test_quota_bench_smoke_writes_the_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(QUOTA),
            "--quick",
            "--no-peers",
            "--only",
            "a,b",
            "--requests",
            "40",
            "--scale",
            "600",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "quota.md").read_text()
    assert "| (a) limits exact | llmroute |" in table
    assert "| (b) no limits, learning | llmroute |" in table
    result = json.loads((tmp_path / "quota.json").read_text())
    assert [row["name"] for row in result["scenarios"]] == ["a", "b"]
    assert all(row["failed"] == 0 for row in result["scenarios"])
    assert result["header_parse"]["aiohttp_headers_us"] > 0
