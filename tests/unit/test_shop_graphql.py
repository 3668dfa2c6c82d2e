"""The local shop's Shopify GraphQL: the document reader, validation, query cost, search terms and cursors."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox.shop import gql, shopify_graphql
from sandbox.shop.orders import shopify_order
from sandbox.shop.shopify_graphql import DataSource, GraphQLErrors, execute, prepare
from sandbox.shop.shopify_schema import order_node, subscription_node
from sandbox.shop.shopify_search import SearchError, decode_cursor, paginate, parse_search

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
# The shape the reconciliation client sends: variables, an aliased field, a fragment, edges and nodes.
CLIENT_QUERY = """
query Window($cursor: String, $window: String!, $size: Int = 10) {
  orders(first: $size, after: $cursor, query: $window, sortKey: UPDATED_AT) {
    edges { cursor node { ...OrderFields } }
    pageInfo { hasNextPage endCursor }
  }
}
fragment OrderFields on Order {
  id legacyResourceId name createdAt updatedAt test displayFinancialStatus sourceName email phone cartToken
  money: totalPriceSet { presentmentMoney { amount currencyCode } shopMoney { amount currencyCode } }
  customer { id email }
  lineItems(first: 5) { nodes { sku quantity variant { legacyResourceId } } }
  customAttributes { key value }
}
"""


def order(index: int, minutes_ago: int = 0, **params: object) -> dict:
    stamp = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat()
    return shopify_order(1000 + index, index, {"created_at": stamp, **params}, NOW)


def source(orders: list[dict], subscriptions: list[dict] | None = None) -> DataSource:
    return DataSource(
        orders=lambda: orders,
        subscriptions=lambda: subscriptions or [],
        order_node=lambda o: order_node(o, "local-shop.myshopify.com"),
        subscription_node=subscription_node,
        shop={"name": "local-shop"},
    )


def test_the_reader_takes_variables_defaults_aliases_fragments_and_directives():
    document = gql.parse('query Q($a: Int = 3, $b: [String!]) { x: f(n: $a, s: "t\\u00e9", e: ENUM, l: [1, 2.5]) '
                         "@include(if: true) { ... on T { y } ...F } } fragment F on T { z } # comment")  # fmt: skip
    operation = document.operation()
    field = operation.selections[0]
    assert operation.variable_defaults == {"a": 3}
    assert isinstance(field, gql.Field) and field.key == "x" and field.name == "f"
    assert gql.value_of(field.arguments["n"], {"a": 7}) == 7
    assert (
        field.arguments["s"] == "té"
        and field.arguments["e"] == gql.EnumValue("ENUM")
        and field.arguments["l"] == [1, 2.5]
    )
    assert set(document.fragments) == {"F"}


@pytest.mark.parametrize(
    "text",
    ["{ orders(first: 1) { nodes { id } }", "{ orders(first: ) { id } }", "query { }", "{ a } { b }", "{ a ? }"],
)
def test_unreadable_documents_are_a_graphql_error_with_a_location_not_a_crash(text):
    with pytest.raises(GraphQLErrors) as caught:
        prepare({"query": text}, "2026-10")
    assert caught.value.errors and caught.value.errors[0].message


def test_unknown_fields_and_arguments_are_refused_the_way_shopify_names_them():
    with pytest.raises(GraphQLErrors) as caught:
        prepare({"query": "{ orders(first: 1, bogus: 2) { nodes { id nope } } products(first: 1) { id } }"}, "2026-10")
    codes = sorted(e.to_json()["extensions"]["code"] for e in caught.value.errors)
    assert codes == ["argumentNotAccepted", "undefinedField", "undefinedField"]


def test_cart_token_exists_only_from_api_version_2026_07():
    query = {"query": "{ orders(first: 1) { nodes { cartToken checkoutToken } } }"}
    assert prepare(query, "2026-07").requested_cost == 3
    with pytest.raises(GraphQLErrors, match="cartToken"):
        prepare(query, "2026-04")


def test_mutations_and_missing_page_sizes_are_refused():
    with pytest.raises(GraphQLErrors, match="queries only"):
        prepare({"query": "mutation { orderUpdate(input: {}) { order { id } } }"}, "2026-10")
    with pytest.raises(GraphQLErrors, match="first or last"):
        prepare({"query": "{ orders { nodes { id } } }"}, "2026-10")
    with pytest.raises(GraphQLErrors, match="between 0 and 250"):
        prepare({"query": "{ orders(first: 251) { nodes { id } } }"}, "2026-10")


def test_requested_cost_is_two_per_connection_plus_first_times_one_node():
    # node = Order 1 + MoneyBag 1 + 2 MoneyV2 + customer 1 + lineItems (2 + 5 x (LineItem 1 + variant 1)) + attrs 1
    prepared = prepare({"query": CLIENT_QUERY, "variables": {"window": "updated_at:>='2026-11-01'"}}, "2026-10")
    assert prepared.requested_cost == 2 + 10 * (1 + 1 + 2 + 1 + (2 + 5 * 2) + 1)
    assert prepare({"query": "{ orders(first: 50) { nodes { id } } }"}, "2026-10").requested_cost == 52


def test_execution_answers_the_client_query_and_counts_the_actual_cost_of_what_it_returned():
    orders = [order(i, minutes_ago=10 - i, cart_token=f"cart-{i}") for i in range(3)]
    prepared = prepare({"query": CLIENT_QUERY, "variables": {"window": "updated_at:>='2026-11-20T11:00:00Z'"}},
                       "2026-10")  # fmt: skip
    result = execute(prepared, source(orders))
    edges = result.data["orders"]["edges"]
    assert [e["node"]["cartToken"] for e in edges] == ["cart-0", "cart-1", "cart-2"]
    node = edges[0]["node"]
    assert node["id"] == "gid://shopify/Order/1000" and node["legacyResourceId"] == "1000"
    assert node["displayFinancialStatus"] == "PAID" and node["money"]["shopMoney"] == {
        "amount": "49.90",
        "currencyCode": "USD",
    }
    assert result.data["orders"]["pageInfo"]["hasNextPage"] is False
    # 2 + 3 orders x (1 + MoneyBag 1 + 2 MoneyV2 + customer 1 + lineItems 2 + 1 x (1 + 1)); no attribute objects
    assert result.actual_cost == 2 + 3 * (1 + 1 + 2 + 1 + 2 + 2)


def test_an_unknown_search_field_is_ignored_and_reported_as_shopify_does():
    orders = [order(1, minutes_ago=5), order(2, minutes_ago=5000)]
    prepared = prepare({"query": '{ orders(first: 5, query: "created_at:>2026-11-19 finacial_status:paid") '
                                 "{ nodes { id } } }"}, "2026-10")  # fmt: skip
    result = execute(prepared, source(orders))
    assert [n["id"] for n in result.data["orders"]["nodes"]] == ["gid://shopify/Order/1001"]
    assert result.search[0]["warnings"] == [
        {"field": "finacial_status", "message": "Invalid search field for this query."}
    ]


def test_search_terms_compare_dates_and_refuse_or():
    search = parse_search(
        "updated_at:>='2026-11-20T11:00:00Z' AND updated_at:<=\"2026-11-20T11:30:00+00:00\" test:false"
    )
    assert [t.op for t in search.terms] == [">=", "<=", "="]
    inside = order(1, minutes_ago=45)
    outside = order(2, minutes_ago=10)
    assert search.matches(inside) and not search.matches(outside)
    with pytest.raises(SearchError):
        parse_search("created_at:>2026-01-01 OR test:true")


def test_paging_by_cursor_visits_every_order_once_even_with_equal_timestamps():
    orders = [order(i, minutes_ago=i % 3) for i in range(25)]  # many share an updated_at: the id breaks ties
    seen, cursor = [], None
    while True:
        page = paginate(orders, parse_search(None), "updated_at", 4, cursor)
        seen += [o["id"] for o in page.orders]
        if not page.has_next:
            break
        cursor = shopify_graphql.encode_cursor(page.orders[-1], "updated_at")
    assert sorted(seen) == sorted(o["id"] for o in orders) and len(seen) == len(set(seen))
    assert decode_cursor(cursor)[1] in seen  # Shopify's cursor shape: {"last_id": ..., "last_value": ...}


def test_a_garbled_cursor_is_an_error_for_that_field():
    prepared = prepare({"query": '{ orders(first: 2, after: "not-a-cursor") { nodes { id } } }'}, "2026-10")
    result = execute(prepared, source([order(1)]))
    assert result.data == {"orders": None} and "Invalid cursor" in result.errors[0].message


def test_webhook_subscriptions_answer_with_the_endpoint_union():
    subscriptions = [{"id": 7, "topic": "orders/paid", "uri": "http://127.0.0.1:1/", "api_version": "2026-10",
                      "created_at": "2026-11-20T12:00:00Z"}]  # fmt: skip
    query = ("{ webhookSubscriptions(first: 5) { nodes { id topic uri format apiVersion { handle } "
             "endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } } } }")  # fmt: skip
    prepared = prepare({"query": query}, "2026-10")
    node = execute(prepared, source([], subscriptions)).data["webhookSubscriptions"]["nodes"][0]
    assert node["topic"] == "ORDERS_PAID" and node["apiVersion"] == {"handle": "2026-10"}
    assert node["endpoint"] == {"__typename": "WebhookHttpEndpoint", "callbackUrl": "http://127.0.0.1:1/"}
    with pytest.raises(GraphQLErrors, match="directly on unions"):
        prepare({"query": "{ webhookSubscriptions(first: 1) { nodes { endpoint { callbackUrl } } } }"}, "2026-10")
