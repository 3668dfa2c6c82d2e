"""The browser's collect endpoint (``shared.receive.collect``): it writes click contexts, joins on none of its own."""

from __future__ import annotations

from shared.sources import SourceDefinition

SOURCE = SourceDefinition("collect", "Browser (collect)")
