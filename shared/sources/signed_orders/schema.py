"""The documented order a backend posts (docs/signed-orders.md), and its mapping to an :class:`OrderEvent`.

Pure, no I/O. The body is read only once its signature is valid; then every field is checked
here, and anything the schema does not name, or a value of the wrong type, is a 400 that names
the field (:class:`InvalidOrder`, never quoting the value: it may be a shopper's data). The
shopper's identifiers stay raw in the :class:`OrderEvent`: the order flow hashes them
(:func:`shared.domain.identity.build_user`) before anything is published, and none of them is a
log field (:func:`log_fields`).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from shared.domain.consent import ConsentSnapshot
from shared.domain.events import EARLIEST_EVENT_TIME
from shared.domain.identity import RawIdentity
from shared.domain.models import Properties
from shared.domain.scrub import scrub_text, scrub_url
from shared.domain.untrusted import UnsafeInput, describe_validation, parse_json, validation_problems
from shared.receive.orders import OrderEvent
from shared.sources import CUSTOMER
from shared.sources.signed_orders import CHECKOUT, SOURCE

PLATFORM = SOURCE.name
# Amounts below a trillion (shared.domain.untrusted.money's bound), lines of at most a million units.
_MAX_AMOUNT = 1e12
_MAX_CONTENTS = 100
# Unix seconds stop at 10 digits until 2286; 13 digits is a millisecond timestamp sent by mistake.
_LATEST_SECONDS = 9_999_999_999

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=256)]
Amount = Annotated[float, Field(ge=0, lt=_MAX_AMOUNT, strict=True, allow_inf_nan=False)]


def _seconds(value: Any) -> int:
    """Unix seconds, or an ISO 8601 text with its offset ("2026-05-04T10:15:00Z"), as unix seconds."""
    if isinstance(value, bool):
        raise ValueError("expected unix seconds or an ISO 8601 date-time with an offset")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < EARLIEST_EVENT_TIME:
            raise ValueError(f"unix seconds before {EARLIEST_EVENT_TIME} (2015-01-01) are not an order's time")
        if value > _LATEST_SECONDS:
            raise ValueError("too large for unix seconds: send seconds, not milliseconds")
        return int(value)
    if isinstance(value, str) and 0 < len(value.strip()) <= 40:
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not an ISO 8601 date-time (e.g. 2026-05-04T10:15:00Z)") from None
        if parsed.tzinfo is None:
            raise ValueError("an ISO 8601 date-time needs its offset (Z or +hh:mm): the time is ambiguous without it")
        return _seconds(int(parsed.timestamp()))
    raise ValueError("expected unix seconds or an ISO 8601 date-time with an offset")


def _id_text(value: Any) -> Any:
    """An id a backend may hold as a number: its decimal text (never through a float)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Timestamp = Annotated[int, BeforeValidator(_seconds)]
IdText = Annotated[
    str, BeforeValidator(_id_text), StringConstraints(strip_whitespace=True, min_length=1, max_length=256)
]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Content(_Part):
    content_id: IdText
    content_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=512)] | None = None
    quantity: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] = 1
    price: Amount | None = None


class Customer(_Part):
    """The shopper as the backend knows them, raw: hashed by the order flow, never logged."""

    email: Text | None = None
    phone: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    external_id: IdText | None = None
    city: Text | None = None
    state: Text | None = None
    zip: Text | None = None
    # ISO 3166-1 alpha-2; also the region a phone number without its +country code is read in.
    country: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2}$")] | None = None


class Client(_Part):
    """The browser the order was placed from, as the checkout saw it."""

    ip: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    user_agent: Annotated[str, StringConstraints(max_length=1024)] | None = None
    ttclid: Annotated[str, StringConstraints(strip_whitespace=True, max_length=512)] | None = None
    ttp: Annotated[str, StringConstraints(strip_whitespace=True, max_length=512)] | None = None
    page_url: Annotated[str, StringConstraints(strip_whitespace=True, max_length=4096)] | None = None
    referrer: Annotated[str, StringConstraints(strip_whitespace=True, max_length=4096)] | None = None


class JoinKeys(_Part):
    """What collect stored the shopper's click context under: this source's kinds and the customer id.

    The field names are the kinds' names (shared.sources.signed_orders, shared.sources.CUSTOMER);
    a unit test holds them equal.
    """

    signed_orders_checkout: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    customer_id: IdText | None = None


class Consent(_Part):
    marketing: Literal["granted", "denied"] | None = None


class SignedOrder(_Part):
    """One order, as docs/signed-orders.md documents it."""

    order_id: Annotated[str, BeforeValidator(_id_text), Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    event: Literal["Purchase", "PlaceAnOrder"] = "Purchase"
    status: Literal["paid", "cancelled"] = "paid"
    occurred_at: Timestamp | None = None
    paid_at: Timestamp | None = None
    currency: Annotated[str, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
                        Field(pattern=r"^[A-Z]{3}$")] | None = None  # fmt: skip
    value: Amount | None = None
    contents: list[Content] = Field(default_factory=list, max_length=_MAX_CONTENTS)
    customer: Customer = Field(default_factory=Customer)
    client: Client = Field(default_factory=Client)
    join_keys: JoinKeys = Field(default_factory=JoinKeys)
    consent: Consent | None = None
    test: Annotated[bool, Field(strict=True)] = False

    @model_validator(mode="after")
    def _complete(self) -> SignedOrder:
        if self.paid_at is None and self.occurred_at is None:
            raise ValueError("paid_at or occurred_at is required: when the order was paid (or placed)")
        if self.value is not None and self.currency is None:
            raise ValueError("currency is required with value (ISO 4217, e.g. EUR)")
        return self

    @property
    def event_time(self) -> int:
        when = self.paid_at if self.paid_at is not None else self.occurred_at
        assert when is not None  # _complete
        return when


class InvalidOrder(Exception):
    """The body is not a documented order; ``reason`` and ``fields`` name what to fix, never quote a value."""

    def __init__(self, reason: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.fields = reason, fields or []


def read_order(body: bytes) -> SignedOrder:
    """The order in a (verified) body, or :class:`InvalidOrder` naming every field at fault."""
    try:
        document = parse_json(body)  # lone surrogates refused: a developer can fix the body
    except UnsafeInput as exc:
        raise InvalidOrder(exc.reason) from None
    if not isinstance(document, dict):
        raise InvalidOrder("the body must be a JSON object: the order (docs/signed-orders.md)")
    try:
        return SignedOrder.model_validate(document)
    except ValidationError as exc:
        problems = validation_problems(exc, limit=20)
        fields = [{"field": ".".join(map(str, loc)) or "order", "problem": msg} for loc, msg in problems]
        reason = "invalid order: " + "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        raise InvalidOrder(reason, fields) from None


def checkout_consent(order: SignedOrder) -> ConsentSnapshot | None:
    """The checkout's consent answer, which the backend vouches for by signing it; None when it has none."""
    answer = order.consent.marketing if order.consent else None
    return None if answer is None else ConsentSnapshot(granted=answer == "granted")


def join_keys(order: SignedOrder) -> list[tuple[str, str]]:
    """The order's join keys, most specific first: the checkout id, then the customer id."""
    given = {CHECKOUT.name: order.join_keys.signed_orders_checkout, CUSTOMER.name: order.join_keys.customer_id}
    kinds = (*SOURCE.join_order(), CUSTOMER)
    return [(kind.name, value) for kind in kinds if (value := given.get(kind.name))]


def _properties(order: SignedOrder, site: str) -> dict[str, Any]:
    contents = [
        {
            "content_id": item.content_id,
            # Free text forwarded to TikTok: a product name can carry what a shopper typed.
            "content_name": scrub_text(item.content_name) if item.content_name else None,
            "quantity": item.quantity,
            "price": item.price,
        }
        for item in order.contents
    ]
    properties = {
        "currency": order.currency,
        "value": order.value,
        "content_type": "product" if contents else None,
        "contents": [{k: v for k, v in c.items() if v is not None} for c in contents],
        "num_items": sum(item.quantity for item in order.contents) or None,
        "order_id": order.order_id,
        "shop_id": site,
    }
    return {k: v for k, v in properties.items() if v not in (None, [])}


def _identity(order: SignedOrder) -> RawIdentity:
    customer, client = order.customer, order.client
    return RawIdentity(
        emails=[customer.email],
        phones=[(customer.phone, customer.country)],
        external_ids=[customer.external_id],
        first_name=customer.first_name,
        last_name=customer.last_name,
        zip_code=customer.zip,
        city=customer.city,
        state=customer.state,
        country=customer.country,
        ttclid=client.ttclid,
        ttp=client.ttp,
        ip=client.ip,
        user_agent=client.user_agent,
    )


def to_order_event(order: SignedOrder, site: str) -> OrderEvent:
    """The order as the shared order flow takes it (``site``: the site's key, which event ids carry).

    :class:`InvalidOrder` if its properties are not what TikTok takes (a schema gap, caught as a 400).
    """
    properties = _properties(order, site)
    try:
        Properties.model_validate(properties)  # fail here, as a 400, never later as an internal error
    except ValidationError as exc:
        raise InvalidOrder(describe_validation(exc, "order properties")) from None
    return OrderEvent(
        platform=PLATFORM,
        shop=site,
        order_id=order.order_id,
        event=order.event,
        event_time=order.event_time,
        identity=_identity(order),
        properties=properties,
        page_url=scrub_url(order.client.page_url) if order.client.page_url else None,
        referrer=scrub_url(order.client.referrer) if order.client.referrer else None,
        join_keys=join_keys(order),
    )


def log_fields(order: SignedOrder) -> dict[str, Any]:
    """What the outcome line carries about the order: its id and flags, no shopper data."""
    return {"order_id": order.order_id, "event": order.event, "status": order.status, "test": order.test}
