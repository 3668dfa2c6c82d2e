"""`make bench`: every benchmark in one run, printed and written to bench/results/<time>.json.

Each part starts its own emulators and processes on free ports, drives bounded,
self-stopping load on loopback and stops everything. Not part of `make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("import_times", "collect_bench", "shopify_bench", "woocommerce_bench", "sender_bench")


def main() -> int:
    only = set(sys.argv[1:]) or set(PARTS)
    results: dict[str, object] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    failed = []
    for part in PARTS:
        if part not in only:
            continue
        print(f"\n===== {part} =====", flush=True)
        started = time.monotonic()
        # Each part in its own process: one part's clients and threads cannot skew the next.
        completed = subprocess.run([sys.executable, "-m", f"bench.{part}"], cwd=ROOT, text=True, capture_output=True)
        print(completed.stdout, end="", flush=True)
        if completed.returncode != 0:
            failed.append(part)
            print(completed.stderr[-3000:], file=sys.stderr)
        results[part] = {"seconds": round(time.monotonic() - started, 1), "returncode": completed.returncode,
                         "output": completed.stdout[-20000:]}  # fmt: skip
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nfigures written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
