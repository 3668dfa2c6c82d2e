"""No raw personal data in free text reaches Pub/Sub or Firestore through collect.

Read on the real topic's message bytes and the real Firestore documents: an
email or phone in the page URL, the referrer, a search query or a content name
is redacted; a custom property whose name says it holds personal data
(``customer_email``), custom text and ``description`` are not forwarded at all

"""

from __future__ import annotations

import json
import uuid

from tests.emulator.test_collect_function import (  # noqa: F401 (fixtures)
    collect,
    make_collect,
    request_body,
)

RAW = ("jane.doe", "jane%40", "example.com", "2133734253", "213 373", "373-4253", "Jane Doe", "Elm Street")


def test_personal_data_in_urls_and_free_text_never_reaches_the_topic_or_the_store(collect):  # noqa: F811
    document = request_body(f"cart-{uuid.uuid4().hex}")
    document["context"].update(
        page_url="https://shop.example/thanks/jane.doe@example.com?email=jane.doe%40example.com&ttclid=E.C.P.k"
        "&utm_source=tiktok&utm_term=2133734253&ref=x#jane",
        referrer="https://mail.example/?to=+1%20213%20373%204253",
    )
    event = document["events"][0]
    event["page"] = {"url": "https://shop.example/p?phone=%2B12133734253&utm_campaign=spring",
                     "referrer": "https://user:pw@www.tiktok.com/@jane.doe@example.com"}  # fmt: skip
    event["properties"].update(
        customer_email="jane.doe@example.com",
        firstName="Jane",
        shipping_address="1 Elm Street",
        name="Jane Doe",
        note="call me on +1 213 373 4253 or jane.doe@example.com",
        product_name="Blue shirt",
        sizes=["M", "jane.doe@example.com"],
        query="jane.doe@example.com",
        description="gift for 213-373-4253",
    )
    event["properties"]["contents"][0]["content_name"] = "engraved: jane.doe@example.com"
    response = collect.post(document)
    assert response.status_code == 200, response.get_data(as_text=True)
    personal, text = response.get_json()["skipped"]
    assert personal["reason"] == "personal data not forwarded: customer_email, firstName, name, shipping_address"
    assert text["reason"] == "free text not forwarded: description, note, product_name, sizes"

    [message] = collect.topic.pull_all(1)
    data = message.data.decode()
    for raw in RAW:
        assert raw.lower() not in data.lower(), raw
    envelope = json.loads(data)
    assert envelope["page"] == {"url": "https://shop.example/p?utm_campaign=spring",
                                "referrer": "https://www.tiktok.com/[redacted]"}  # fmt: skip
    properties = envelope["properties"]
    # Custom text and description are not forwarded at all; query and content names are scrubbed.
    assert not {"product_name", "sizes", "note", "description"} & set(properties)
    assert properties["query"] == "[redacted]"
    assert properties["contents"][0] == {"content_id": "SKU1", "content_name": "engraved: [redacted]", "quantity": 1}
    assert not {"customer_email", "firstName", "shipping_address", "name"} & set(properties)

    [context] = collect.contexts().values()
    stored = json.dumps(context, default=str)
    for raw in RAW:
        assert raw.lower() not in stored.lower(), raw
    assert (
        context["page_url"]
        == "https://shop.example/thanks/[redacted]?ttclid=E.C.P.k&utm_source=tiktok&utm_term=%5Bredacted%5D"
    )


# --- shapes hidden by Unicode or encoding, and identifiers of the wrong shape -------------

# Each raw shape, and what must appear nowhere once it went through collect.
HIDDEN = {
    "idn": ("hidden.idn@exämple.de", ("hidden.idn", "exämple", "xn--")),
    "cjk": ("hidden.cjk@例え.jp", ("hidden.cjk", "例え")),
    "fullwidth at": ("hidden.fw＠example.com", ("hidden.fw", "＠")),
    "small at": ("hidden.small﹫example.com", ("hidden.small", "﹫")),
    "fullwidth digits": ("＋１ ２１３ ３７３ ４２５３", ("２１３", "４２５３")),
    "encoded phone": ("%2B1%20213%20555%200199", ("2135550199", "213%20555", "213 555", "555 0199")),
}
FORBIDDEN = [part for _, parts in HIDDEN.values() for part in parts] + ["3734253", "373 4253", "373-4253"]


def _everywhere(document: dict) -> dict:
    """``document`` with every hidden shape in every free-text field and identifier collect reads."""
    idn, cjk, fw, small, digits, encoded = (raw for raw, _ in HIDDEN.values())
    document["context"].update(
        page_url=f"https://shop.example/a/{idn}/{digits}?utm_term={fw}&utm_content={encoded}&ttclid=E.C.P.ok",
        referrer=f"https://ref.example/{small}",
        ttclid=cjk,
        ttp=digits,
        locale=small,
    )
    event = document["events"][0]
    event["page"] = {"url": f"https://shop.example/p/{cjk}?utm_source={small}", "referrer": None}
    event["properties"].update(query=f"find {idn}", description=f"for {fw} or {digits}",
                               gift_note=f"to {small}, call {encoded}", tags=[cjk, "ok"])  # fmt: skip
    event["properties"]["contents"][0]["content_name"] = f"engraved {cjk} {digits}"
    return document


def test_hidden_shapes_in_every_field_never_reach_the_topic_or_the_store(collect):  # noqa: F811
    document = _everywhere(request_body(f"cart-{uuid.uuid4().hex}"))
    response = collect.post(document)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_data(as_text=True)
    assert {i["field"] for i in response.get_json()["ignored"]} >= {"context.ttclid", "context.ttp", "context.locale"}

    [message] = collect.topic.pull_all(1)
    data = message.data.decode()
    [context] = collect.contexts().values()
    stored = json.dumps(context, default=str, ensure_ascii=False)
    for where, text in (("topic", data), ("store", stored), ("answer", answer)):
        decoded = json.dumps(json.loads(text), ensure_ascii=False) if text.strip().startswith("{") else text
        for part in FORBIDDEN:
            assert part not in decoded, (where, part)
    envelope = json.loads(data)
    assert (envelope["user"].get("ttclid"), envelope["user"].get("ttp"), envelope["user"].get("locale")) == (
        None, None, None)  # fmt: skip
    assert envelope["page"]["url"] == "https://shop.example/p/[redacted]?utm_source=%5Bredacted%5D"
    assert context["page_url"] == (
        "https://shop.example/a/[redacted]/[redacted]?utm_term=%5Bredacted%5D&utm_content=%5Bredacted%5D&ttclid=E.C.P.ok"
    )
