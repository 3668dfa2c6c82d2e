"""The collect endpoint: a browser's events -> a click context in Firestore and envelopes on the topic.

One module per step of a request (the steps are listed in :mod:`.handler`):

- ``request``: the request as the adapter hands it over, and a :class:`Refused` 4xx;
- ``ratelimit``: the per-client token bucket of one instance;
- ``admission``: origin, client address, prefetch/bot/preview drops, the bounded body, the pixel admitted;
- ``schema``: the JSON body as pydantic models, and a validation error as field + problem;
- ``keys``: which join keys a request proves it holds;
- ``plan``: the pure :class:`Plan` (context and envelopes, personal data scrubbed);
- ``commit``: plans of concurrent requests committed together, and the contexts already written;
- ``runtime``: the instance's :class:`Runtime`: settings, rate limit, group commit, Firestore and Pub/Sub;
- ``handler``: :func:`handle`, CORS, the answer, the log line's fields;
  :func:`handle_request` adapts the function's request to it.

Only what ``functions/collect/main.py`` uses is re-exported here.
"""

from shared.receive.collect.handler import handle, handle_request
from shared.receive.collect.runtime import Runtime

__all__ = ["Runtime", "handle", "handle_request"]
