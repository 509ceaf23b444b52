"""Sync tokens: ours round-trip; a Synapse next_batch counts as the start."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.sync.tokens import StreamToken, parse_sync_token

CURRENT = StreamToken(500, 7, "ab12")


def test_our_token_resumes_where_the_client_was() -> None:
    assert parse_sync_token("s120_3_ab12", current=CURRENT, max_global=500) == \
        StreamToken(120, 3, "ab12")


def test_synapse_next_batch_syncs_from_the_start_of_our_stream() -> None:
    # what Synapse 1.x hands out: one part per stream
    token = parse_sync_token("s72594_4483_1934_0_16_3_1_12_0_1", current=CURRENT,
                             max_global=500)
    assert token == StreamToken(0, 0, "ab12")


@pytest.mark.parametrize("text", ["s1_2", "x72594_4483_1934_0_16_3_1", "s1_2_3_4_5_x_7",
                                  "s999_1_ab12"])
def test_malformed_or_future_token_is_invalid_param(text: str) -> None:
    with pytest.raises(MatrixError) as e:
        parse_sync_token(text, current=CURRENT, max_global=500)
    assert e.value.errcode == "M_INVALID_PARAM"
