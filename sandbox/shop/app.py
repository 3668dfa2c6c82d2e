"""The shop's Flask app: Shopify's Admin API, WooCommerce's REST API, and the ``/_shop`` control API.

Routes are adapters: the platforms' rules live in :mod:`sandbox.shop.state` (memory, deliveries),
:mod:`sandbox.shop.shopify_graphql` (queries and their cost) and :mod:`sandbox.shop.woo_api`
(listing). Answers, including errors, take each platform's own shape, so a client written
against the shop meets what it will meet in production.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.shop import shopify_graphql, woo_api
from sandbox.shop.config import ShopConfig, update_knobs
from sandbox.shop.orders import ACTIONS, PLATFORMS, WOOCOMMERCE, OrderError
from sandbox.shop.shopify_schema import order_node, subscription_node
from sandbox.shop.state import TOKEN_LIFETIME, NotFound, Shop

SHOPIFY_UNAUTHORIZED = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
_API_VERSION = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
_log_lock = threading.Lock()


def log_line(record: dict[str, Any]) -> None:
    """One JSON line on stdout (never a token, a secret or a body)."""
    with _log_lock:
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()


def _json_body() -> Any:
    try:
        return json.loads(request.get_data() or b"null")
    except ValueError:
        return None


def _woo_error(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify(code=code, message=message, data={"status": status}), status


def _woo_credentials() -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, password
    key, secret = request.args.get("consumer_key"), request.args.get("consumer_secret")
    return (key, secret) if key and secret else None


def create_app(config: ShopConfig, shop: Shop | None = None) -> Flask:
    """The shop for ``config``; ``shop`` (tests) replaces the one it would build."""
    state = shop or Shop(config)
    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["shop"] = state

    # -- Shopify ---------------------------------------------------------------------------------

    @app.post("/admin/oauth/access_token")
    def access_token() -> tuple[Response, int]:
        form = request.form if request.form else (_json_body() or {})
        if not isinstance(form, dict) and not hasattr(form, "get"):
            form = {}
        if form.get("grant_type") != "client_credentials":
            return jsonify(error="unsupported_grant_type",
                           error_description="The sandbox grants client_credentials only"), 400  # fmt: skip
        token = state.issue_token(str(form.get("client_id") or ""), str(form.get("client_secret") or ""))
        if token is None:
            return jsonify(error="invalid_client", error_description="Client credentials are invalid"), 400
        return jsonify(access_token=token, scope=state.knobs.shopify_scopes, expires_in=TOKEN_LIFETIME), 200

    @app.post("/admin/api/<version>/graphql.json")
    def graphql(version: str) -> tuple[Response, int]:
        if not _API_VERSION.match(version):
            return jsonify(errors="Not Found"), 404
        if not state.token_valid(request.headers.get("X-Shopify-Access-Token")):
            g.log_fields = {"refused": "token"}
            return jsonify(SHOPIFY_UNAUTHORIZED), 401
        if (request.content_type or "").startswith("application/graphql"):
            body: Any = {"query": request.get_data(as_text=True)}
        else:
            body = _json_body()
            if body is None:
                return jsonify(errors="Invalid JSON in request body"), 400
        try:
            prepared = shopify_graphql.prepare(body, version)
        except shopify_graphql.GraphQLErrors as exc:
            return jsonify(errors=[e.to_json() for e in exc.errors]), 200
        requested = prepared.requested_cost
        with state.lock:
            knobs = state.knobs
            if requested > knobs.graphql_max_query_cost:
                message = (f"Query cost is {requested}, which exceeds the single query max cost limit "
                           f"({knobs.graphql_max_query_cost}).")  # fmt: skip
                error = {"message": message, "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                                            "maxCost": knobs.graphql_max_query_cost}}  # fmt: skip
                return jsonify(errors=[error]), 200
            if not state.bucket.try_charge(requested):
                g.log_fields = {"throttled": True, "requested_cost": requested}
                cost = {"requestedQueryCost": requested, "actualQueryCost": None,
                        "throttleStatus": state.bucket.status()}  # fmt: skip
                throttled = {"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}  # fmt: skip
                return jsonify(errors=[throttled], extensions={"cost": cost}), 200
        source = shopify_graphql.DataSource(
            orders=state.visible_shopify_orders,
            subscriptions=state.live_subscriptions,
            order_node=lambda order: order_node(order, config.shop_domain),
            subscription_node=subscription_node,
            shop={"id": "gid://shopify/Shop/1", "name": config.shop_domain.split(".")[0],
                  "myshopifyDomain": config.shop_domain, "ianaTimezone": "Etc/UTC", "currencyCode": "USD"},
        )  # fmt: skip
        result = shopify_graphql.execute(prepared, source)
        with state.lock:
            state.bucket.refund(requested - result.actual_cost)
            cost = {"requestedQueryCost": requested, "actualQueryCost": result.actual_cost,
                    "throttleStatus": state.bucket.status()}  # fmt: skip
        answer: dict[str, Any] = {}
        if result.errors:
            answer["errors"] = [e.to_json() for e in result.errors]
        answer["data"] = result.data
        answer["extensions"] = {"cost": cost, **({"search": result.search} if result.search else {})}
        g.log_fields = {"requested_cost": requested, "actual_cost": result.actual_cost}
        return jsonify(answer), 200

    # -- WooCommerce ---------------------------------------------------------------------------------

    def woo_guard(write: bool, listing: bool) -> tuple[Response, int] | None:
        """The host's rate limit, then WooCommerce's key check: an answer to send, or None to go on."""
        if state.count_woo_request():
            response, status = _woo_error("woocommerce_rest_too_many_requests", "Too many requests.", 429)
            response.headers["Retry-After"] = str(state.knobs.woocommerce_retry_after)
            return response, status
        credentials = _woo_credentials()
        if credentials is None:
            if write:
                return _woo_error("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource.",
                                  401)  # fmt: skip
            verb = "list resources" if listing else "view this resource"
            return _woo_error("woocommerce_rest_cannot_view", f"Sorry, you cannot {verb}.", 401)
        key, secret = credentials
        keys = {config.woocommerce_consumer_key: (config.woocommerce_consumer_secret, "read"),
                config.woocommerce_admin_key: (config.woocommerce_admin_secret, "read_write")}  # fmt: skip
        known = keys.get(key)
        if known is None:
            return _woo_error("woocommerce_rest_authentication_error", "Consumer key is invalid.", 401)
        if not secrets.compare_digest(secret, known[0]):
            return _woo_error("woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401)
        if write and known[1] == "read":
            return _woo_error("woocommerce_rest_authentication_error",
                              "The API key provided does not have write permissions.", 401)  # fmt: skip
        return None

    @app.get("/wp-json/wc/v3/orders")
    def woo_orders() -> Any:
        refused = woo_guard(write=False, listing=True)
        if refused:
            return refused
        try:
            query = woo_api.parse_order_query(request.args)
        except woo_api.InvalidParams as exc:
            return jsonify(exc.body()), 400
        with state.lock:
            orders = list(state.orders[WOOCOMMERCE].values())
        page = woo_api.list_orders(orders, query)
        response = jsonify(page.orders)
        response.headers["X-WP-Total"] = str(page.total)
        response.headers["X-WP-TotalPages"] = str(page.total_pages)
        link = woo_api.link_header(request.base_url, request.args, query.page, page.total_pages)
        if link:
            response.headers["Link"] = link
        g.log_fields = {"total": page.total, "page": query.page}
        return response

    @app.get("/wp-json/wc/v3/orders/<int:order_id>")
    def woo_order(order_id: int) -> Any:
        refused = woo_guard(write=False, listing=False)
        if refused:
            return refused
        try:
            return jsonify(state.order(WOOCOMMERCE, order_id))
        except NotFound:
            return _woo_error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)

    @app.get("/wp-json/wc/v3/webhooks")
    def woo_webhooks() -> Any:
        refused = woo_guard(write=False, listing=True)
        if refused:
            return refused
        with state.lock:
            hooks = [w.rest_json(config.woocommerce_site_url) for w in state.webhooks.values()]
        status = request.args.get("status", "all")
        hooks = [h for h in hooks if status == "all" or h["status"] == status]
        response = jsonify(hooks)
        response.headers["X-WP-Total"] = str(len(hooks))
        response.headers["X-WP-TotalPages"] = "1" if hooks else "0"
        return response

    @app.route("/wp-json/wc/v3/webhooks/<int:webhook_id>", methods=["GET", "PUT", "POST", "PATCH"])
    def woo_webhook(webhook_id: int) -> Any:
        write = request.method != "GET"
        refused = woo_guard(write=write, listing=False)
        if refused:
            return refused
        try:
            if write:
                params = _json_body() or dict(request.form) or {}
                if not isinstance(params, dict):
                    return _woo_error("rest_invalid_json", "Invalid JSON body passed.", 400)
                hook = state.update_webhook(webhook_id, params)
            else:
                with state.lock:
                    hook = state.webhooks[webhook_id]
        except (NotFound, KeyError):
            return _woo_error("woocommerce_rest_webhook_invalid_id", "Invalid ID.", 404)
        except OrderError as exc:
            return _woo_error("woocommerce_rest_webhook_invalid_status", str(exc), 400)
        with state.lock:
            return jsonify(hook.rest_json(config.woocommerce_site_url))

    # -- control API (loopback only) ------------------------------------------------------------------

    @app.before_request
    def start() -> Response | None:
        g.started = time.monotonic()
        if request.path.startswith("/_shop"):
            try:
                loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                response = jsonify(error="the control API answers loopback clients only")
                response.status_code = 403
                return response
        return None

    def control(handler: Callable[[], Any]) -> Any:
        try:
            return handler()
        except NotFound as exc:
            return jsonify(error=str(exc)), 404
        except (OrderError, ValueError) as exc:
            return jsonify(error=str(exc)), 400

    def platform_of(name: str) -> str:
        if name not in PLATFORMS:
            raise NotFound(f"unknown platform {name!r}: {' or '.join(PLATFORMS)}")
        return name

    @app.get("/")
    def health() -> Response:
        return jsonify(status="ok", shopify=config.shop_domain, woocommerce=config.woocommerce_site_url)

    @app.get("/_shop/config")
    def show_config() -> Response:
        with state.lock:
            knobs = state.knobs.to_json()
        return jsonify(
            shop_domain=config.shop_domain, shopify_api_version=config.shopify_api_version,
            shopify_client_id=config.shopify_client_id, woocommerce_site_url=config.woocommerce_site_url,
            woocommerce_consumer_key=config.woocommerce_consumer_key,
            woocommerce_admin_key=config.woocommerce_admin_key,
            fixtures=str(config.fixtures) if config.fixtures else None, knobs=knobs,
        )  # fmt: skip

    @app.post("/_shop/config")
    def set_config() -> Any:
        def apply() -> Any:
            knobs = update_knobs(state.knobs, _json_body())
            state.set_knobs(knobs)
            return jsonify(knobs=knobs.to_json())

        return control(apply)

    @app.post("/_shop/reset")
    def reset() -> Response:
        state.reset()
        return jsonify(status="reset")

    @app.post("/_shop/<name>/orders")
    def place(name: str) -> Any:
        def run() -> Any:
            params = _json_body() or {}
            if not isinstance(params, dict):
                raise OrderError("the body must be a JSON object")
            order = state.place(platform_of(name), params, deliver=bool(params.get("webhooks", True)))
            return jsonify(order=order, deliveries=state.list_deliveries(order_id=str(order["id"]))), 201

        return control(run)

    @app.post("/_shop/<name>/orders/bulk")
    def place_many(name: str) -> Any:
        def run() -> Any:
            params = _json_body() or {}
            count, spacing = params.pop("count", 0), params.pop("spacing_seconds", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= 100_000:
                raise OrderError("count must be an integer between 1 and 100000")
            if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or spacing < 0:
                raise OrderError("spacing_seconds must be a non-negative number")
            ids = state.place_many(platform_of(name), count, params, float(spacing))
            return jsonify(count=len(ids), first_id=ids[0], last_id=ids[-1]), 201

        return control(run)

    @app.get("/_shop/<name>/orders/<int:order_id>")
    def show_order(name: str, order_id: int) -> Any:
        return control(lambda: jsonify(order=state.order(platform_of(name), order_id)))

    @app.post("/_shop/<name>/orders/<int:order_id>/<action>")
    def change(name: str, order_id: int, action: str) -> Any:
        def run() -> Any:
            if action not in ACTIONS:
                raise NotFound(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
            params = _json_body() or {}
            order = state.change(platform_of(name), order_id, action, params)
            return jsonify(order=order)

        return control(run)

    @app.get("/_shop/deliveries")
    def deliveries() -> Response:
        filters = {k: request.args.get(k) for k in ("platform", "order_id", "state", "topic", "target_id")}
        return jsonify(deliveries=state.list_deliveries(**filters))

    @app.get("/_shop/shopify/subscriptions")
    def subscriptions() -> Response:
        with state.lock:
            listed = [s.to_json() for s in state.subscriptions.values()]
        return jsonify(subscriptions=listed)

    @app.post("/_shop/shopify/subscriptions")
    def add_subscription() -> Any:
        return control(lambda: (jsonify(subscription=state.add_subscription(_json_body() or {}).to_json()), 201))

    @app.delete("/_shop/shopify/subscriptions/<int:subscription_id>")
    def remove_subscription(subscription_id: int) -> Any:
        def run() -> Any:
            state.remove_subscription(subscription_id)
            return jsonify(removed=subscription_id)

        return control(run)

    @app.get("/_shop/woocommerce/webhooks")
    def webhooks() -> Response:
        with state.lock:
            listed = [{**w.rest_json(config.woocommerce_site_url), "failure_count": w.failure_count}
                      for w in state.webhooks.values()]  # fmt: skip
        return jsonify(webhooks=listed)

    @app.post("/_shop/woocommerce/webhooks")
    def add_webhook() -> Any:
        def run() -> Any:
            hook = state.add_webhook(_json_body() or {})
            return jsonify(webhook={**hook.rest_json(config.woocommerce_site_url), "failure_count": 0}), 201

        return control(run)

    # -- every answer --------------------------------------------------------------------------------

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        response = exc.get_response()
        response.set_data(json.dumps({"error": exc.name, "message": exc.description}))
        response.content_type = "application/json"
        return response

    @app.after_request
    def log_request(response: Response) -> Response:
        log_line(
            {
                "severity": "ERROR" if response.status_code >= 500 else "INFO",
                "message": f"{request.method} {request.path} {response.status_code}",
                "time": round(time.time(), 3),
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 1),
                **g.get("log_fields", {}),
            }
        )
        return response

    return app
