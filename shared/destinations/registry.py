"""The destinations there are, and the one the sender sends to."""

from __future__ import annotations

from typing import Any

from shared.destinations import Destination
from shared.destinations.tiktok import DESTINATION as TIKTOK

DESTINATIONS: dict[str, Destination[Any, Any]] = {d.name: d for d in (TIKTOK,)}
SENDER: Destination[Any, Any] = TIKTOK  # where the sender sends (one destination today)

# The compatibility rule (shared.destinations): one destination at most keeps the unprefixed, legacy claim keys.
if sum(d.legacy_claim_keys for d in DESTINATIONS.values()) > 1:
    raise RuntimeError("two destinations keep legacy claim keys: their claims would share document ids")
