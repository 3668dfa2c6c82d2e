"""The browser's collect endpoint (``shared.receive.collect``): it writes click contexts, joins on none of its own."""

from __future__ import annotations

from shared.sources import LocalRun, SourceDefinition

SOURCE = SourceDefinition(
    "collect",
    "Browser (collect)",
    function="collect",
    settings="shared.config:CollectSettings",
    local=LocalRun("COLLECT_PORT", 8080),
)
