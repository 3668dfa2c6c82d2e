"""The domain, pure: no I/O and no clock (callers pass the time).

- ``events``: TikTok's standard event names and the deterministic event ids.
- ``hashing``: normalization and SHA-256 of identifiers as TikTok matches them.
- ``identity``: a shopper's raw identifiers to the hashed ``user`` object.
- ``consent``: the consent snapshot and the decision it leads to under a policy.
- ``models``: the envelope the receivers publish and the sender sends.
- ``match_keys``: which match keys an event carries, and its coverage score.
- ``scrub``: personal data out of URLs and free text.
- ``untrusted``: bounded reading and parsing of bodies anyone can send.
"""
