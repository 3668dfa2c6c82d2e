"""Every order the shop sold, accounted for: `make reconcile ARGS="--since 3d --backfill"`.

Lists each configured shop's and site's orders of a window through their own APIs, compares
each with what the pipeline holds under its event id, and with ``--backfill`` sends the missing
paid ones through the webhooks' order flow; ``--repair`` sets a disabled WooCommerce webhook
active again. Against the running ``make run`` stack it needs nothing exported (``.run/stack.json``).
See ``shared/reconcile/`` and docs/operations.md, "Accuracy: orders in the shop vs sent".
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.reconcile.job import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
