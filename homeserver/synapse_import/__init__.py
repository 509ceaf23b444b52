"""`homeserver import-synapse`: move a Synapse server onto this one.

``source``: Synapse's homeserver.yaml and database, read only;
``importer``: the checks, the signing key, the order of the stages and the
check afterwards (its docstring has the design); ``common``: what a stage
runs in; the stages by area: ``accounts``, ``e2e``, ``rooms``,
``directory`` (aliases, directory, receipts), ``media``. The operator's
guide: docs/migrating-from-synapse.md.
"""
