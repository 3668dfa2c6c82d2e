"""Which match keys an event carried, and our coverage score: presence only, never a value.

TikTok matches a server event to a person and a click with the identifiers in
its ``user`` object. How well it does is its Event Match Quality (EMQ), shown
only in Events Manager; there is no API for it. What we can know ourselves is
which identifiers each delivered event carried. :func:`present` names them and
:func:`score` weighs them into a 0..10 **coverage score**: our proxy, not
TikTok's EMQ (TikTok's formula is not published and also weighs how many of
the keys it could match). See docs/operations.md for how to read both.

Pure and cheap: the sender calls it for every event it delivers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Every key we report, in a stable order (logs, /metrics, the report).
KEYS = (
    "email",
    "phone",
    "external_id",
    "ttclid",
    "ttp",
    "ip_user_agent",  # both: TikTok matches on the pair, an ip alone is of little use
    "first_name",
    "last_name",
    "zip_code",
    "city",
    "state",
    "country",
)

# Points per key, 10 in all. The click id ties the event to the ad click itself; an email or
# phone lets TikTok find the person when the click is lost; the rest help at the margin.
# Name and address parts are reported but weigh nothing: TikTok uses them only together
# with a stronger key.
WEIGHTS = {"ttclid": 3, "email": 2, "phone": 2, "external_id": 1, "ttp": 1, "ip_user_agent": 1}
MAX_SCORE = sum(WEIGHTS.values())


def present(user: Any) -> tuple[str, ...]:
    """The names of the match keys ``user`` (a :class:`~shared.domain.models.UserData`) carries, in KEYS order."""
    found = []
    for key in KEYS:
        if key == "ip_user_agent":
            if user.ip and user.user_agent:
                found.append(key)
        elif getattr(user, key):
            found.append(key)
    return tuple(found)


def score(keys: Iterable[str]) -> int:
    """The coverage score (0..10) of an event carrying ``keys``."""
    return sum(WEIGHTS.get(key, 0) for key in keys)
