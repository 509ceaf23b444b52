"""Two spam checker modules to copy from (docs/moderation.md), loadable as is:

- ``blocked_servers.BlockedServers``: no invites from or to, no joins to
  rooms of, and no links to the servers or domains listed;
- ``new_accounts.NewAccountLimits``: accounts younger than a given age may not
  create rooms, and may invite and send links only sparingly.
"""
