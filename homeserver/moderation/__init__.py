"""Keeping spam and abuse out: the content filter (``content_filter.py``), spam
checker modules loaded from config (``spam_checker.py``, two examples in
``examples/``), and the gate the send, membership and room-creation paths ask
(``gate.py``). docs/moderation.md has the design."""
