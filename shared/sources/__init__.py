"""Where events come from: the definition each source (a platform, the browser) gives the framework.

A source is one module below this package that exports one
:class:`SourceDefinition`: its name, its title, whether its events are order
events, and the join-key kinds it owns, each with the shape of the random
value a browser must send to be trusted with it (:class:`Shape`) and the
collect body field that carries it. :mod:`registry` lists them; the collect
endpoint (its body model, which keys it trusts), the order flow, the report
and the order-id scheme read the registry instead of naming a platform.

One kind is the framework's, not a source's: :data:`CUSTOMER`, the store's
customer id. Every order source may join on it, and it is trusted only when
the store's server signed it (``shared.receive.collect.keys``), never for its
shape, so no source defines it and none may redefine it.

Pure data: this package imports nothing of the pipeline, so any layer may read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Letters, digits, - and _: the alphabet of the random tokens platforms generate.
TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Shape:
    """What a random token of one kind looks like; a guessable value does not fit."""

    pattern: re.Pattern[str]
    min_length: int
    # Distinct characters: "aaaaaaaaaaaaaaaaaaaa" or "00000000000000000042" are no secret.
    min_distinct: int
    what: str

    def fits(self, value: str) -> bool:
        return (
            len(value) >= self.min_length and bool(self.pattern.match(value)) and len(set(value)) >= self.min_distinct
        )


@dataclass(frozen=True)
class JoinKind:
    """One kind of join key: what a click context is stored under and an order looks it up by."""

    name: str  # the kind, as stored and as the order flow looks it up
    field: str  # the collect body field that carries it: context.join_keys.<field>
    # The random value's shape; None for the framework's kind, trusted by signature instead.
    shape: Shape | None
    # Within its source, a higher one is listed (and looked up) first: the most specific key.
    specificity: int = 0
    # The value as posted ends in "?<secret>" the order never carries (Shopify's cart.js token, ?key=...).
    strip_query: bool = False

    def normalize(self, value: str) -> str:
        return value.split("?", 1)[0] if self.strip_query else value


@dataclass(frozen=True)
class LocalRun:
    """How ``make run`` serves a source's function: its port (and the variable that moves it), its dev settings."""

    port_variable: str
    port: int
    # Development defaults (printed at start; the same variables override them). Secrets are marked so
    # the banner masks them.
    settings: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceDefinition:
    """A source, as the framework runs it.

    The framework reads a source's code only through the dotted ``"module:attribute"`` paths below,
    imported when first needed, so this definition (and the registry) stays pure data.
    """

    name: str  # as envelopes, order event ids (``<name>:<shop>:order:...``) and the report spell it
    title: str  # for people: logs, docs
    # The kinds it owns, in the order of their collect body fields.
    join_kinds: tuple[JoinKind, ...] = ()
    # Its events are orders (event ids in the order scheme, claimed by the sender), not a browser's.
    order_events: bool = False
    # The folder under functions/ that receives it (its deploy unit, named in Terraform's one map entry).
    function: str | None = None
    # Its settings class ("module:Class", a shared.config._EnvSettings): what the function reads.
    settings: str | None = None
    # Its entries' key in PIPELINE_TENANTS. The entries are the source's own: shared.config.Tenants checks
    # their pixel and keeps them, its settings validate the rest.
    tenants_key: str | None = None
    # Reading the shop's own order list for a window ("module:attribute"): reconciliation's hook.
    orders: str | None = None
    # Its function under `make run`.
    local: LocalRun | None = None

    def join_order(self) -> tuple[JoinKind, ...]:
        """Its kinds, most specific first."""
        return tuple(sorted(self.join_kinds, key=lambda kind: -kind.specificity))


# The framework's kind: a customer id, a join key only with the store's signature (collect/keys.py).
CUSTOMER = JoinKind("customer_id", "customer_id", None)
