"""`homeserver import-synapse`: move a Synapse server onto this one.

``source``: Synapse's homeserver.yaml and database, read only;
``importer``: the stages that write ours (design in its docstring, the
operator's guide in docs/migrating-from-synapse.md).
"""
