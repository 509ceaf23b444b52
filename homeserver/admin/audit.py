"""The admin audit log: one line per admin action, on its own logger.

Operators route ``homeserver.admin.audit`` to a file of its own (or a SIEM)
with the ``log_config`` of ``config/homeserver.yaml``. A line names the admin,
the action and the target, and the parameters that say what was done; never
a password or a token.
"""

from __future__ import annotations

import logging
from typing import Any

audit_logger = logging.getLogger("homeserver.admin.audit")


def log_admin_action(admin: str, action: str, target: str, **details: Any) -> None:
    """``admin`` did ``action`` to ``target`` (a user, room, token, ...)."""
    extra = "".join(f" {k}={v!r}" for k, v in sorted(details.items()))
    audit_logger.info("admin=%s action=%s target=%s%s", admin, action, target, extra)
