"""Each test is refused at collection outside the lightest folder that gives it the fixtures it uses."""

from __future__ import annotations

import pytest

from tests import tiers


@pytest.mark.parametrize(
    ("folder", "uses", "says"),
    [
        ("emulator", set(), "test t in tests/emulator uses no emulator: move it to tests/unit"),
        ("stack", {"store", "emulators"}, "test t in tests/stack uses no running stack: move it to tests/emulator"),
        ("stack", set(), "test t in tests/stack uses no running stack: move it to tests/unit"),
        ("browser", {"stack"}, "test t in tests/browser uses no browser: move it to tests/stack"),
    ],
)
def test_a_test_in_a_heavier_folder_than_it_needs_is_refused_naming_where_it_belongs(folder, uses, says):
    assert tiers.refusal("t", folder, uses) == says


@pytest.mark.parametrize(
    ("folder", "uses", "says"),
    [
        ("unit", {"store"}, "t is in tests/unit but uses ['store']: move it a tier up"),
        ("unit", {"stack", "emulators"}, "t is in tests/unit but uses ['emulators', 'stack']: move it a tier up"),
        ("emulator", {"stack", "store"}, "t is in tests/emulator but uses ['stack']: move it a tier up"),
    ],
)
def test_a_test_in_a_lighter_folder_than_it_needs_is_refused(folder, uses, says):
    assert tiers.refusal("t", folder, uses) == says


@pytest.mark.parametrize(
    ("folder", "uses"),
    [("unit", set()), ("emulator", {"store"}), ("emulator", {"downstream"}), ("stack", {"stack_store"}),
     ("browser", {"browser", "stack"}), ("infra", set()), ("reliability", {"emulators"})],
)  # fmt: skip
def test_a_test_in_the_folder_of_what_it_uses_is_accepted(folder, uses):
    assert tiers.refusal("t", folder, uses) is None


def test_a_stack_test_that_starts_its_own_stack_from_the_emulators_counts_as_a_stack_test():
    assert tiers.refusal("t", "stack", {"emulators"}, starts_a_stack=True) is None
    assert tiers.needed_tier({"emulators"}, starts_a_stack=True) == "stack"


def test_the_exemption_marker_keeps_a_test_that_starts_its_own_processes_and_never_a_heavier_fixture():
    assert tiers.refusal("t", "stack", set(), exempt=True) is None
    assert (
        tiers.refusal("t", "unit", {"store"}, exempt=True) == "t is in tests/unit but uses ['store']: move it a tier up"
    )
