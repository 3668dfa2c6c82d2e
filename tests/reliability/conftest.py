"""The reliability suite's own stack: the functions and the sandbox as real processes, hurt on purpose.

These tests pause the Firestore emulator, kill functions and flood endpoints,
so they get a stack of their own (``rstack``) instead of the session's shared
``stack``: other tests never see a killed function. It runs against the
session's emulators with ``CONSENT_POLICY=opt-out`` (an order is sent unless
the shopper said no, so every paid order must reach TikTok) and trusts one
proxy hop, so traffic can stand for many shoppers through ``X-Forwarded-For``
(see :func:`tests.reliability.scenarios.stack_settings`).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import localstack
import pytest

from tests.reliability.scenarios import ReliabilityStack, running_stack


@pytest.fixture(scope="session")
def rstack(emulators: localstack.Emulators) -> Iterator[ReliabilityStack]:
    with running_stack(emulators) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)) as client:
        yield client
