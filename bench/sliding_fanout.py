"""Scenario ``sliding_fanout``: delivery latency to N sliding sync connections.

    python -m bench.sliding_fanout --engine sqlite|postgres [--size full|small|tiny] [--json PATH]

``bench.fanout`` with one transport, ``sliding``: N users in one room, each
holding a simplified sliding sync connection (MSC4186) whose one list is
that room (``bench.fanout.SLIDING_BODY``: a window of one room, its newest
50 events, its name and lazy members), long-polling with its ``pos``
(``bench.lightpoll.SlidingReceivers``), while a sender posts at a fixed
rate, open loop. Figures: the latency from a send being issued to each
receiver having the message, p50/p99, and the fraction delivered. Synapse
speaks the same endpoint, so the same run measures both.
"""

from __future__ import annotations

import sys
from typing import Any

from bench import fanout
from bench.fanout import scenario_main
from bench.server import Target

NAME = "sliding_fanout"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"receivers": [300], "rate": 5, "messages": 50, "drain_s": 30, "warm_up_s": 60,
             "transports": ["sliding"], "client_filter": "plain"},
    "small": {"receivers": [50], "rate": 5, "messages": 20, "drain_s": 15, "warm_up_s": 30,
              "transports": ["sliding"], "client_filter": "plain"},
    "tiny": {"receivers": [3], "rate": 20, "messages": 4, "drain_s": 10, "warm_up_s": 10,
             "transports": ["sliding"], "client_filter": "plain"},
}


async def run_scenario(target: Target, params: dict[str, Any], *,
                       ours: bool) -> dict[str, Any]:
    """``bench.fanout``'s stages over sliding sync; see the module doc."""
    result = await fanout.run_scenario(target, params, ours=ours)
    result["scenario"] = NAME
    return result


def main(argv: list[str] | None = None) -> int:
    return scenario_main(NAME, SIZES, run_scenario, argv)


if __name__ == "__main__":
    sys.exit(main())
