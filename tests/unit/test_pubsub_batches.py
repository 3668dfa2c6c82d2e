"""The publisher splits a batch into requests by size as well as by message count."""

from __future__ import annotations


def test_requests_are_split_by_size_as_well_as_by_count():
    from shared.infra.pubsub import MAX_BYTES_PER_RPC, MAX_MESSAGES_PER_RPC, _chunks

    big = [(b"x" * 1_000_000, {"pixel_code": "PIX"}) for _ in range(20)]
    sizes = [len(chunk) for chunk in _chunks(big)]
    assert sum(sizes) == 20 and max(sizes) * 1_000_000 <= MAX_BYTES_PER_RPC and len(sizes) == 3
    small = [(b"{}", {}) for _ in range(2 * MAX_MESSAGES_PER_RPC + 1)]
    assert [len(chunk) for chunk in _chunks(small)] == [MAX_MESSAGES_PER_RPC, MAX_MESSAGES_PER_RPC, 1]
