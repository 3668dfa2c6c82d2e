"""``python -m shared.reconcile``: the reconcile command (``make reconcile``, ``scripts/reconcile.py``)."""

import sys

from shared.reconcile.job import main

sys.exit(main())
