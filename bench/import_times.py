"""Cold-start figure: import time of each function's entry point in a fresh process.

Each function is imported the way Cloud Functions does it (its own folder and
``shared/`` on the path, nothing else of the repo), in a new interpreter, best
of ``repeat`` runs; next to it, the import time of the client libraries the
function may need, so the share we control is visible.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("collect", "shopify_webhook", "woocommerce_webhook", "sender")
LIBRARIES = {
    "functions_framework": "import functions_framework",
    "pydantic": "import pydantic",
    "httpx": "import httpx",
    "phonenumbers": "import phonenumbers",
    "google.cloud.firestore": "from google.cloud import firestore",
    "google.cloud.pubsub_v1": "from google.cloud import pubsub_v1",
}

_LABEL = {"functions": "function", "libraries": "library"}

_PROBE = """
import sys, time
started = time.perf_counter()
{statement}
print(time.perf_counter() - started)
"""


def _time_import(statement: str, cwd: Path, extra_path: list[str]) -> float:
    env = {"PYTHONPATH": ":".join(extra_path), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "0"}
    output = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(output.strip().splitlines()[-1])


def _best(statement: str, cwd: Path, extra_path: list[str], repeat: int) -> float:
    _time_import(statement, cwd, extra_path)  # warm the bytecode cache and the page cache
    return min(_time_import(statement, cwd, extra_path) for _ in range(repeat))


def run(repeat: int = 5) -> dict:
    results: dict[str, dict] = {"functions": {}, "libraries": {}}
    for name in FUNCTIONS:
        folder = ROOT / "functions" / name
        # Loading main.py by path is what functions-framework does; shared/ sits beside it in the bundle.
        statement = (
            "import importlib.util as u; s = u.spec_from_file_location('main', 'main.py'); "
            "m = u.module_from_spec(s); s.loader.exec_module(m)"
        )
        seconds = _best(statement, folder, [str(folder), str(ROOT)], repeat)
        results["functions"][name] = {"import_seconds": round(seconds, 4)}
    for name, statement in LIBRARIES.items():
        results["libraries"][name] = {"import_seconds": round(_best(statement, ROOT, [str(ROOT)], repeat), 4)}
    return results


def print_table(results: dict) -> None:
    print("\nImport time in a fresh process (best of runs)")
    for kind in ("functions", "libraries"):
        for name, row in results[kind].items():
            print(f"  {_LABEL[kind]:9} {name:24} {row['import_seconds'] * 1000:8.1f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Import time of each function's entry point and its libraries")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run()
    print_table(results)
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
