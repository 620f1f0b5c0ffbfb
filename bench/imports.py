"""Import cost of one statement in a fresh interpreter: wall and CPU time, peak RSS.

Only `sys`, `time` and `resource` are loaded before the clock starts, so nothing the
measured statement needs is already imported. Prints one JSON line.

    python bench/imports.py "import httpx"
    python -X importtime bench/imports.py "from llmroute import Router"
"""

from __future__ import annotations

import resource
import sys
import time


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's `ru_maxrss` survives `exec`, so a child would
    report its parent's peak if that was higher; the `VmHWM` of /proc does not."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    statement = sys.argv[1] if len(sys.argv) > 1 else "pass"
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    exec(statement, {})
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    rss = peak_rss_mb()
    import json

    print(
        json.dumps(
            {
                "statement": statement,
                "wall_ms": wall * 1000,
                "cpu_ms": cpu * 1000,
                "maxrss_mb": rss,
                "modules": len(sys.modules),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
