"""Which tier a test belongs in, from the fixtures it uses: the rule tests/conftest.py applies at collection.

A tier is a folder of tests/ and what its tests may start: ``unit`` nothing, ``emulator`` the
Firestore and Pub/Sub emulators, ``stack`` the whole local pipeline, ``browser`` a real Chromium
as well. A test is refused in a folder heavier than what it uses (it would run where it is not
needed, and slow every run of that tier) as well as in one lighter than what it uses.
"""

from __future__ import annotations

from collections.abc import Set

EMULATOR_FIXTURES = frozenset({"emulators", "store", "topic", "firestore_client", "pubsub_clients", "downstream",
                               "event_publisher", "collection_prefix"})  # fmt: skip
STACK_FIXTURES = frozenset({"stack", "own_stack", "stack_store", "publish", "faults"})
BROWSER_FIXTURES = frozenset({"browser"})

# Lightest first: a test belongs in the heaviest tier whose fixtures it uses.
ORDER = ("unit", "emulator", "stack", "browser")
USES = {"emulator": EMULATOR_FIXTURES, "stack": STACK_FIXTURES, "browser": BROWSER_FIXTURES}
WHAT = {"emulator": "no emulator", "stack": "no running stack", "browser": "no browser"}
# A folder refuses the fixtures of the tiers above it.
FORBIDS = {"unit": EMULATOR_FIXTURES | STACK_FIXTURES, "emulator": STACK_FIXTURES}

# Put on a test that starts its tier's processes itself (``make run`` as a subprocess), with the reason.
EXEMPT_MARKER = "starts_own_processes"


def needed_tier(uses: Set[str], starts_a_stack: bool = False) -> str:
    """The lightest tier that gives a test the fixtures it ``uses``.

    ``starts_a_stack``: the test (or a fixture of its own module) asks for ``emulators`` by name,
    as one that starts a stack of its own with ``running_stack(emulators, ...)`` does.
    """
    needed = "stack" if starts_a_stack else "unit"
    for tier in ORDER[1:]:
        if uses & USES[tier] and ORDER.index(tier) > ORDER.index(needed):
            needed = tier
    return needed


def refusal(nodeid: str, folder: str, uses: Set[str], starts_a_stack: bool = False, exempt: bool = False) -> str | None:
    """Why the test ``nodeid`` in tests/``folder`` is in the wrong tier, or None when it is in the right one.

    ``uses``: the tier fixtures of its whole fixture closure; ``exempt``: it carries the marker
    that says it starts its tier's processes itself.
    """
    used = sorted(uses & FORBIDS.get(folder, frozenset()))
    if used:
        return f"{nodeid} is in tests/{folder} but uses {used}: move it a tier up"
    if folder not in USES or exempt:
        return None
    needed = needed_tier(uses, starts_a_stack)
    if ORDER.index(needed) < ORDER.index(folder):
        return f"test {nodeid} in tests/{folder} uses {WHAT[folder]}: move it to tests/{needed}"
    return None
