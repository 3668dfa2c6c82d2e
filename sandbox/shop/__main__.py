"""Serve the shop: ``python -m sandbox.shop --host 127.0.0.1 --port 8088``.

``--port`` defaults to ``SHOP_PORT`` (8088). Identities and secrets come from the environment,
with the local stack's dev values as defaults: ``SHOPIFY_SHOP_DOMAIN``, ``SHOPIFY_WEBHOOK_SECRET``,
``SHOPIFY_CLIENT_ID``, ``SHOPIFY_CLIENT_SECRET``, ``SHOPIFY_ADMIN_TOKEN``, ``SHOPIFY_API_VERSION``,
``WOOCOMMERCE_SITE_URL``, ``WOOCOMMERCE_WEBHOOK_SECRET``, ``WOOCOMMERCE_CONSUMER_KEY``/``_SECRET``
(read) and ``WOOCOMMERCE_ADMIN_CONSUMER_KEY``/``_SECRET`` (read_write). Where the shop delivers:
``--shopify-webhook-url`` / ``SHOP_SHOPIFY_WEBHOOK_URL`` and ``--woocommerce-webhook-url`` /
``SHOP_WOOCOMMERCE_WEBHOOK_URL`` (none: no webhook until one is added through ``/_shop``).
``SHOP_FIXTURES`` names the seed folder ("" seeds nothing); ``SHOP_TIME_FACTOR`` scales Shopify's
retry schedule. Logs are JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace

from werkzeug.serving import run_simple

from sandbox.shop.app import create_app, log_line
from sandbox.shop.config import DEFAULT_PORT, ShopConfig, from_environ, update_knobs


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m sandbox.shop", description="Local Shopify store and "
                                     "WooCommerce site.")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default $SHOP_PORT or {DEFAULT_PORT})")
    parser.add_argument("--shopify-webhook-url", default=None, help="subscribe the order topics to this address")
    parser.add_argument("--woocommerce-webhook-url", default=None, help="order.created/updated webhooks to this URL")
    parser.add_argument("--time-factor", type=float, default=None, help="scale Shopify's retry delays (1: real)")
    parser.add_argument("--no-seed", action="store_true", help="start without the fixture orders")
    args = parser.parse_args(argv)
    if args.port is None:
        raw = environ.get("SHOP_PORT") or str(DEFAULT_PORT)
        if not raw.isdigit():
            parser.error(f"SHOP_PORT must be a port number, got {raw!r}")
        args.port = int(raw)
    if not 0 < args.port < 65536:
        parser.error(f"port must be between 1 and 65535, got {args.port}")
    try:
        config = from_environ(environ)
        if args.time_factor is not None:
            config = replace(config, knobs=update_knobs(config.knobs, {"time_factor": args.time_factor}))
    except ValueError as exc:
        parser.error(str(exc))
    args.config = replace(
        config,
        shopify_webhook_url=args.shopify_webhook_url or config.shopify_webhook_url,
        woocommerce_webhook_url=args.woocommerce_webhook_url or config.woocommerce_webhook_url,
        fixtures=None if args.no_seed else config.fixtures,
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config: ShopConfig = args.config
    app = create_app(config)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    base = f"http://{args.host}:{args.port}"
    log_line(
        {
            "severity": "INFO",
            "message": "shop listening",
            "health": base + "/",
            "shopify_graphql": f"{base}/admin/api/{config.shopify_api_version}/graphql.json",
            "woocommerce_rest": f"{base}/wp-json/wc/v3/orders",
            "control": f"{base}/_shop/config",
            "shop": config.shop_domain,
            "site": config.woocommerce_site_url,
            "shopify_webhooks_to": config.shopify_webhook_url,
            "woocommerce_webhooks_to": config.woocommerce_webhook_url,
        }
    )
    with contextlib.suppress(KeyboardInterrupt):
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False, use_debugger=False)
    app.extensions["shop"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
