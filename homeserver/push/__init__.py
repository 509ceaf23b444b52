"""Push: the push rules (``rules.py``: the spec's default set and a user's
own), their evaluator (``evaluator.py``: pure), notification counts, and
pushers (``pushers.py``: the HTTP pusher that posts to a push gateway)."""
