"""Where local commands find the running stack, and what they say in production when nothing is set up.

``make run`` writes the environment its functions got (emulator addresses,
project, topic, pixel, token...) to ``.run/stack.json`` at the top of the checkout
(``LOCAL_STACK_FILE`` overrides the path; ``LOCAL_RUN_DIR`` moves the whole run
folder: logs, this file and the lock that keeps a second ``make run`` out) while it
runs. A command (``make redrive``, the WooCommerce replay) calls :func:`prepare`
first: when the emulator variables are unset and a live stack wrote that file,
the command gets the stack's variables (what the caller exported still wins).
Otherwise it is talking to Google Cloud, and a missing project or missing
credentials end it with one line that says what to set, instead of a client
library's traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout (shared/infra/ is two levels down)
STACK_FILE_VARIABLE = "LOCAL_STACK_FILE"
RUN_DIR_VARIABLE = "LOCAL_RUN_DIR"
EMULATOR_VARIABLES = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")


def run_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The folder of a local stack's logs, record and lock: ``.run/`` of the checkout unless LOCAL_RUN_DIR says."""
    return Path(environ.get(RUN_DIR_VARIABLE) or ROOT / ".run")


def stack_file(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(STACK_FILE_VARIABLE) or run_dir(environ) / "stack.json")


def alive(pid: Any) -> bool:
    """Whether a process with this id exists (one of another user counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stack(path: Path) -> dict[str, Any] | None:
    """The record a running ``make run`` wrote, or None (no file, unreadable, or its stack is gone)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("env"), dict) or not alive(record.get("pid")):
        return None  # a stack killed with SIGKILL leaves its file behind: ignore it
    return record


def write_stack(path: Path, env: Mapping[str, str], urls: Mapping[str, str], pid: int | None = None) -> None:
    """Record a running stack for local commands; readable by its owner only (local secrets are in it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid or os.getpid(), "env": dict(env), "urls": dict(urls)}
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=1)
    os.replace(temporary, path)  # readers never see half a file


def use_local_stack(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any] | None:
    """Fill unset variables from the running local stack; its record, or None when none applies."""
    if any(environ.get(name) for name in EMULATOR_VARIABLES):
        return None  # the caller chose its emulators (tests, a hand-made setup)
    record = read_stack(stack_file(environ))
    if record is None:
        return None
    for name, value in record["env"].items():
        if not environ.get(name):
            environ[name] = str(value)
    return record


def production_problem(needs: Sequence[str], environ: Mapping[str, str] = os.environ) -> str | None:
    """What is missing to reach Google Cloud (unset variables, no credentials), or None."""
    missing = [name for name in needs if not environ.get(name)]
    credentials = None
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            google.auth.default()
        except DefaultCredentialsError:
            credentials = "no Google credentials (run `gcloud auth application-default login`)"
    except ImportError:
        credentials = "google-auth is not installed (make venv)"
    if not missing and credentials is None:
        return None
    parts = [f"{', '.join(missing)} unset"] if missing else []
    if credentials:
        parts.append(credentials)
    return "; ".join(parts)


def prepare(command: str, needs: Sequence[str], environ: MutableMapping[str, str] = os.environ) -> str:
    """Point ``command`` at the local stack, or check it can reach Google Cloud; exit 2 with one line if not.

    Returns "local" (the running stack's variables were filled in), "emulators"
    (the caller set emulator variables) or "cloud".
    """
    if use_local_stack(environ) is not None:
        return "local"
    if any(environ.get(name) for name in EMULATOR_VARIABLES):
        return "emulators"
    problem = production_problem(needs, environ)
    if problem is None:
        return "cloud"
    print(
        f"{command}: no local stack is running (`make run` writes {stack_file(environ)}) and for Google Cloud "
        f"{problem}: start `make run`, or set {', '.join(needs)} and the function's other settings as deployed "
        "(README, 'Configuration reference') and log in with gcloud",
        file=sys.stderr,
    )
    raise SystemExit(2)
