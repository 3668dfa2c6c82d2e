"""Local stand-in for TikTok's Events API 2.0, for development and tests.

``create_app`` builds the Flask app; ``python -m sandbox`` serves it. It checks
the real request contract of ``POST /open_api/v1.3/event/track/`` on its own,
without importing ``shared/``, so it is an independent check of our sender.
"""

from sandbox.app import create_app
from sandbox.contract import TRACK_PATH

__all__ = ["TRACK_PATH", "create_app"]
