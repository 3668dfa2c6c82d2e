"""Local stand-ins for a Shopify store and a WooCommerce site, for the reconciliation work and its tests.

``python -m sandbox.shop`` serves both from one process: each platform's own API (Shopify's
GraphQL Admin API with its cost-based throttling, WooCommerce's REST API v3), each platform's
signed webhooks with its own retry and disable rules, and a ``/_shop`` control API to place and
change orders. README.md in this folder lists the endpoints and where each fact comes from.
"""

from sandbox.shop.app import create_app
from sandbox.shop.config import ShopConfig, from_environ
from sandbox.shop.state import Shop

__all__ = ["Shop", "ShopConfig", "create_app", "from_environ"]
