"""Consent signals and the decision whether an event may be sent.

Pure: no I/O. The collect endpoint stores a :class:`ConsentSnapshot` with the
click context; the webhooks read it back and call :func:`decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.config import ConsentPolicy, GpcMode

GrantState = Literal["granted", "denied"]


class ConsentSnapshot(BaseModel):
    """What the page said about consent. Every signal is optional."""

    model_config = ConfigDict(extra="forbid")

    # A plain yes/no from a site's own banner.
    granted: bool | None = None
    # Google Consent Mode v2.
    ad_storage: GrantState | None = None
    ad_user_data: GrantState | None = None
    ad_personalization: GrantState | None = None
    # Shopify Customer Privacy API.
    marketing_allowed: bool | None = None
    sale_of_data_allowed: bool | None = None
    # Global Privacy Control: the ``Sec-GPC: 1`` header or ``navigator.globalPrivacyControl``,
    # an opt-out of the sale and sharing of personal data (see decide).
    gpc: bool | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())

    def explicitly_denied(self) -> bool:
        return (
            self.granted is False
            or self.ad_storage == "denied"
            or self.ad_user_data == "denied"
            or self.marketing_allowed is False
        )

    def explicitly_granted(self) -> bool:
        if self.explicitly_denied():
            return False
        # Consent Mode: storing the click id needs ad_storage, sending it
        # with user data to an ad platform needs ad_user_data.
        consent_mode = self.ad_storage == "granted" and self.ad_user_data == "granted"
        return bool(self.granted) or bool(self.marketing_allowed) or consent_mode


@dataclass(frozen=True)
class ConsentDecision:
    send: bool
    limited_data_use: bool
    # "granted", "policy_opt_out", "denied", "no_consent" (opt-in without a grant)
    reason: str
    # The browser's Global Privacy Control signal took part: limited_data_use, or the denial (gpc "deny").
    gpc: bool = False

    def describe(self) -> str:
        """The decision as logs and answers state it: a sale-of-data opt-out is no plain grant."""
        if not self.send and self.gpc:
            return f"{self.reason} (Global Privacy Control, the pixel's gpc setting is deny)"
        if self.limited_data_use:
            signal = "Global Privacy Control" if self.gpc else "sale or sharing of data opted out"
            return f"{self.reason}, with limited_data_use ({signal})"
        return self.reason


def decide(snapshot: ConsentSnapshot | None, policy: ConsentPolicy, gpc: GpcMode = "limited") -> ConsentDecision:
    """Opt-in sends only on an explicit grant; opt-out sends unless denied.

    A sale-of-data opt-out (Shopify ``saleOfDataAllowed: false``, or
    ``ad_personalization: denied``) still sends, flagged ``limited_data_use``.
    So does Global Privacy Control (``snapshot.gpc``) under the pixel's
    default ``gpc`` mode ``"limited"``, whatever the policy and even after a
    grant; under ``"deny"`` it is a denial.
    """
    signalled = snapshot is not None and snapshot.gpc is True
    if signalled and gpc == "deny":
        return ConsentDecision(False, False, "denied", gpc=True)
    limited = snapshot is not None and (
        snapshot.sale_of_data_allowed is False or snapshot.ad_personalization == "denied" or signalled
    )
    if snapshot is not None and snapshot.explicitly_denied():
        return ConsentDecision(False, False, "denied")
    if snapshot is not None and snapshot.explicitly_granted():
        return ConsentDecision(True, limited, "granted", gpc=signalled)
    if policy == "opt-out":
        return ConsentDecision(True, limited, "policy_opt_out", gpc=signalled)
    return ConsentDecision(False, False, "no_consent")


def with_checkout_consent(context: dict[str, Any] | None, consent: ConsentSnapshot | None) -> dict[str, Any] | None:
    """The click context as the consent decision should see it: the checkout's answer replaces the stored one.

    A signed order may carry the shopper's answer at checkout (WooCommerce's checkout field, a signed
    order's ``consent``). The checkout happens after the click, so its answer is the shopper's latest.
    Global Privacy Control is the browser's standing signal, not a banner answer: a stored one is kept.
    """
    if consent is None:
        return context
    answer = consent.model_dump(exclude_none=True)
    if ((context or {}).get("consent") or {}).get("gpc") is True:
        answer["gpc"] = True
    return {**(context or {}), "consent": answer}
