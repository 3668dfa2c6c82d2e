"""The JSON body of a collect request, as pydantic models, and its parsing into them (docs/collect.md).

Parsing never echoes the input: a refusal names the field and the problem only.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, create_model, field_validator

from shared.domain.consent import ConsentSnapshot
from shared.domain.events import UnknownEventName, canonical_event_name
from shared.domain.models import Properties
from shared.domain.untrusted import UnsafeInput, parse_json, validation_problems
from shared.receive.collect.request import Refused
from shared.sources import CUSTOMER, registry

# Numbers in properties: past this no price, quantity or value is real, and TikTok's doubles lose digits.
MAX_NUMBER = 1e15
# What an event id never holds: controls (C0, DEL, C1), format characters (zero-width, soft hyphen, BOM,
# bidi overrides), lone surrogates and line or paragraph separators. No page's id has them; they would
# hide a look-alike of an order id and show a different id in logs and in Events Manager.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_]{1,40}$")
# Steps pydantic adds to an error's path inside unions and validators: not field names.
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "function-after", "function-before", "constrained-str"})


GrantState = Literal["granted", "denied"]
JoinValue = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Identifier = Annotated[str, Field(max_length=256)]


def _one_or_many(value: Any) -> Any:
    """A single value or a list; numbers (ids) become text, so a union's errors do not double."""
    items = value if isinstance(value, list) else [value]
    return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items]


def _id_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ConsentInput(BaseModel):
    """Consent as the page knows it; every vocabulary is optional and they may be mixed."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    granted: StrictBool | None = None
    # Google Consent Mode v2 (analytics_storage is accepted and ignored).
    ad_storage: GrantState | None = None
    ad_user_data: GrantState | None = None
    ad_personalization: GrantState | None = None
    analytics_storage: GrantState | None = None
    # Shopify Customer Privacy API, camelCase as Shopify names it or snake_case.
    marketing_allowed: StrictBool | None = Field(None, alias="marketingAllowed")
    sale_of_data_allowed: StrictBool | None = Field(None, alias="saleOfDataAllowed")
    analytics_processing_allowed: StrictBool | None = Field(None, alias="analyticsProcessingAllowed")
    preferences_processing_allowed: StrictBool | None = Field(None, alias="preferencesProcessingAllowed")
    # Global Privacy Control as the page reads it (navigator.globalPrivacyControl); the Sec-GPC header counts too.
    gpc: StrictBool | None = None

    def snapshot(self) -> ConsentSnapshot:
        return ConsentSnapshot(
            granted=self.granted,
            ad_storage=self.ad_storage,
            ad_user_data=self.ad_user_data,
            ad_personalization=self.ad_personalization,
            marketing_allowed=self.marketing_allowed,
            sale_of_data_allowed=self.sale_of_data_allowed,
            gpc=self.gpc,
        )


class JoinKeys(BaseModel):
    """Where the webhooks will look for this context: one optional field per join-key kind of the registry.

    :data:`JoinKeysInput` is the model itself, generated from :mod:`shared.sources.registry` (a new
    source's kinds become fields here without an edit); this base holds what does not depend on them.
    """

    model_config = ConfigDict(extra="forbid")

    if TYPE_CHECKING:  # a field of the generated model, after the kinds' (its place in error lists)
        customer_id_signature: str | None = None

    def pairs(self) -> list[tuple[str, str]]:
        """(kind, value) pairs, most specific first; a Shopify cart token loses its ``?key=`` secret.

        (The order's cart_token has none: :attr:`shared.sources.JoinKind.strip_query`.)
        """
        pairs: list[tuple[str, str]] = []
        for kind in registry.JOIN_ORDER:
            value: str | None = getattr(self, kind.field)
            value = kind.normalize(value) if value else None
            if value:
                pairs.append((kind.name, value))
        return pairs


def _join_keys_model() -> type[JoinKeys]:
    """JoinKeysInput: the registry's kinds in field order, then the customer id's signature."""
    fields: dict[str, Any] = {kind.field: (JoinValue | None, None) for kind in registry.JOIN_KINDS}
    # HMAC-SHA256 (hex) of customer_id under COLLECT_SIGNING_SECRET, rendered by the store's server.
    fields["customer_id_signature"] = (Annotated[str, Field(max_length=128)] | None, None)
    return create_model(
        "JoinKeysInput",
        __base__=JoinKeys,
        __module__=__name__,
        __validators__={"_ids": field_validator(CUSTOMER.field, mode="before")(_id_text)},
        **fields,
    )


if TYPE_CHECKING:
    JoinKeysInput = JoinKeys
else:
    JoinKeysInput = _join_keys_model()


class UserInput(BaseModel):
    """Identifiers the site knows (raw or already SHA-256); hashed here, never stored raw."""

    model_config = ConfigDict(extra="forbid")

    email: list[Identifier] = Field(default_factory=list, max_length=10)
    phone: list[Identifier] = Field(default_factory=list, max_length=10)
    external_id: list[Identifier] = Field(default_factory=list, max_length=10)

    _lists = field_validator("email", "phone", "external_id", mode="before")(_one_or_many)


class PageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(max_length=2048)] | None = None
    referrer: Annotated[str, Field(max_length=2048)] | None = None


class ContextInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttclid: Annotated[str, Field(max_length=500)] | None = None
    ttp: Annotated[str, Field(max_length=500)] | None = None
    page_url: Annotated[str, Field(max_length=2048)] | None = None
    referrer: Annotated[str, Field(max_length=2048)] | None = None
    locale: Annotated[str, Field(max_length=35)] | None = None
    join_keys: JoinKeysInput = Field(default_factory=JoinKeysInput)
    user: UserInput = Field(default_factory=UserInput)
    # The page's word that it sent this same context (page aside) earlier in the session. Only ever
    # saves a write this instance already made: see commit.KnownContexts.
    unchanged: StrictBool = False


_CUSTOM_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
MAX_CUSTOM_PROPERTIES = 30
MAX_CUSTOM_TEXT = 1024


def _check_custom(name: str, value: Any, depth: int = 0) -> None:
    if isinstance(value, str):
        if len(value) > MAX_CUSTOM_TEXT:
            raise ValueError(f"custom property {name!r}: text longer than {MAX_CUSTOM_TEXT} characters")
    elif isinstance(value, (list, dict)):
        items = value.values() if isinstance(value, dict) else value
        if depth >= 2 or len(value) > 50:
            raise ValueError(f"custom property {name!r}: nested too deep or too many items")
        for item in items:
            _check_custom(name, item, depth + 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(f"custom property {name!r}", value)
    elif value is not None and not isinstance(value, bool):
        raise ValueError(f"custom property {name!r}: unsupported value")


def _check_number(what: str, value: float) -> None:
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise ValueError(f"{what}: a number between -{MAX_NUMBER:.0e} and {MAX_NUMBER:.0e}")


class EventInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: Annotated[str, Field(min_length=1, max_length=50)]
    # The id the page passed to ttq.track(..., {event_id}): TikTok deduplicates on it.
    event_id: Annotated[str, Field(min_length=1, max_length=512)]
    # Unix seconds or milliseconds (Date.now()); absent: the time of receipt.
    event_time: float | None = Field(None, gt=0)
    properties: Properties = Field(default_factory=Properties)
    page: PageInput | None = None

    @field_validator("event")
    @classmethod
    def _known_name(cls, value: str) -> str:
        try:
            return canonical_event_name(value)
        except UnknownEventName:  # its message quotes the value: not echoed back
            raise ValueError("not a TikTok event name (a standard one, or letters, digits and _)") from None

    @field_validator("event_time", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError("must be a number: unix seconds or milliseconds (Date.now())")
        return value

    @field_validator("properties", mode="before")
    @classmethod
    def _currency_any_case(cls, value: Any) -> Any:
        """``"usd"`` is USD: a page's lowercase code must not cost the request its click context."""
        if isinstance(value, dict) and isinstance(value.get("currency"), str):
            return {**value, "currency": value["currency"].strip().upper()}
        return value

    @field_validator("event_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or any(unicodedata.category(c) in _UNPRINTABLE_CATEGORIES for c in value):
            raise ValueError("must be printable text without invisible characters (the id given to ttq.track)")
        return value.strip()

    @field_validator("properties")
    @classmethod
    def _bounded_custom(cls, value: Properties) -> Properties:
        extra = value.model_extra or {}
        if len(extra) > MAX_CUSTOM_PROPERTIES:
            raise ValueError(f"at most {MAX_CUSTOM_PROPERTIES} custom properties")
        for name, item in extra.items():
            if not _CUSTOM_PROPERTY.match(name):
                raise ValueError("custom property names are letters, digits and _ (at most 50)")
            _check_custom(name, item)
        for name in ("value", "num_items"):
            if getattr(value, name) is not None:
                _check_number(name, getattr(value, name))
        for content in value.contents:
            for name in ("price", "quantity"):
                if getattr(content, name) is not None:
                    _check_number(f"contents.{name}", getattr(content, name))
        return value


class CollectBody(BaseModel):
    """The JSON body of a collect request (documented in docs/collect.md)."""

    model_config = ConfigDict(extra="forbid")

    pixel_code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    # true/false from a site's own banner, or an object of signals.
    consent: ConsentInput | None = None
    context: ContextInput = Field(default_factory=ContextInput)
    events: list[EventInput] = Field(default_factory=list)

    @field_validator("consent", mode="before")
    @classmethod
    def _plain_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"granted": value}
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be true, false or an object of consent signals")
        return value

    def consent_snapshot(self) -> ConsentSnapshot | None:
        return None if self.consent is None else self.consent.snapshot()


def _field_path(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = str(part) if _SAFE_KEY.match(str(part)) else "<key>"
            path += ("." if path else "") + name
    return path or "body"


def describe_validation(exc: ValidationError, limit: int = 10) -> list[dict[str, str]]:
    """Field path and problem for each error; the input values are never echoed."""
    problems = []
    for where, message in validation_problems(exc, limit):
        # A union's errors carry the tried type in their path (e.g. "str", "ConsentInput"); drop those.
        loc = [p for p in where if not (isinstance(p, str) and (p[:1].isupper() or p in _TYPE_NAMES))]
        message = message.removeprefix("Value error, ")
        problems.append({"field": _field_path(loc), "problem": message})
    return problems


def parse_body(raw: bytes, max_events: int) -> CollectBody:
    """The validated body, or :class:`Refused` (400) naming the field.

    Parsed by :func:`shared.domain.untrusted.parse_json`: what it lets through (bounded
    depth and integers, finite numbers, no lone surrogates) is what the publish
    and the Firestore write can serialise.
    """
    try:
        document = parse_json(raw, surrogates="reject")
    except UnsafeInput as exc:
        raise Refused(400, "invalid body", exc.reason) from None
    if not isinstance(document, dict):
        raise Refused(400, "invalid body", "the body must be a JSON object with pixel_code, consent, context, events")
    events = document.get("events")
    if isinstance(events, list) and len(events) > max_events:
        reason = f"events: at most {max_events} events per request (COLLECT_MAX_EVENTS), got {len(events)}"
        raise Refused(400, "invalid request", reason, [{"field": "events", "problem": reason}])
    try:
        return CollectBody.model_validate(document)
    except ValidationError as exc:
        problems = describe_validation(exc)
        reason = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise Refused(400, "invalid request", reason, problems) from None
