"""What the functions run on: Firestore, Pub/Sub, time bounds, logs, counters, HTTP answers.

- ``store``: the one Firestore adapter (click contexts, claims, records; TTLs).
- ``pubsub``: publishing envelopes on the events topic.
- ``deadline``: one delivery's time budget over its Firestore and Pub/Sub calls.
- ``group_commit``: group commit of concurrent requests' writes.
- ``log``: structured JSON lines with the request's trace.
- ``metrics``: the instance's counters.
- ``http``: a function's reply, and refusals that leave a body unread.
- ``instance``: what an instance builds once, on first use; its clients and their bounded views.
- ``localenv``: finding the running local stack (``make run``).
"""
