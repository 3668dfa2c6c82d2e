"""The sources there are, and what the framework reads of them: names, join-key kinds, shapes."""

from __future__ import annotations

import importlib
from typing import Any

from shared.sources import CUSTOMER, JoinKind, Shape, SourceDefinition, collect, shopify, signed_orders, woocommerce

SOURCES: tuple[SourceDefinition, ...] = (shopify.SOURCE, woocommerce.SOURCE, signed_orders.SOURCE, collect.SOURCE)

# Envelopes the sender itself re-sends (a dead event re-driven, a manual replay): no source's own.
FRAMEWORK_SOURCES: tuple[str, ...] = ("redrive", "manual")
# Every name an envelope's ``source`` may hold (shared.domain.models.Source), in the report's order.
SOURCE_NAMES: tuple[str, ...] = (*(source.name for source in SOURCES), *FRAMEWORK_SOURCES)
# The sources whose event ids follow the order scheme (shared.domain.events.order_event_id).
ORDER_SOURCES: tuple[str, ...] = tuple(source.name for source in SOURCES if source.order_events)

# Every join-key kind, in the order of the collect body's fields; the framework's customer id last.
JOIN_KINDS: tuple[JoinKind, ...] = (*(kind for source in SOURCES for kind in source.join_kinds), CUSTOMER)
# The same kinds, most specific first: the order collect lists a request's keys in.
JOIN_ORDER: tuple[JoinKind, ...] = (*(kind for source in SOURCES for kind in source.join_order()), CUSTOMER)
# What a browser's value of each kind must look like (the customer id has a signature instead).
SHAPES: dict[str, Shape] = {kind.name: kind.shape for kind in JOIN_KINDS if kind.shape is not None}

# The PIPELINE_TENANTS keys sources own beyond the framework's (shared.config.Tenants keeps them for their settings).
TENANT_KEYS: tuple[str, ...] = tuple(source.tenants_key for source in SOURCES if source.tenants_key)

_BY_NAME = {source.name: source for source in SOURCES}


def load(path: str) -> Any:
    """The attribute a definition names as ``"package.module:attribute"``, imported now (on first use)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def source(name: str) -> SourceDefinition:
    """The definition named ``name`` (KeyError if there is none)."""
    return _BY_NAME[name]


def _check() -> None:
    names = [source.name for source in SOURCES] + list(FRAMEWORK_SOURCES)
    kinds = [kind.name for kind in JOIN_KINDS]
    fields = [kind.field for kind in JOIN_KINDS]
    functions = [source.function for source in SOURCES if source.function]
    ports = [source.local.port_variable for source in SOURCES if source.local]
    unique = {"source names": names, "join-key kinds": kinds, "collect fields": fields, "functions": functions,
              "tenant keys": list(TENANT_KEYS), "local ports": ports}  # fmt: skip
    for what, values in unique.items():
        if len(set(values)) != len(values):
            raise RuntimeError(f"two sources share {what}: {values}")
    if any(kind.shape is None for source in SOURCES for kind in source.join_kinds):
        raise RuntimeError("a source's join-key kind needs a shape: only the framework's customer id has none")


_check()
