"""Application services (bridges and bots): the spec's application service API.

- ``registration.py``: the registration files (Synapse's YAML format) read
  from ``app_service_config_files``, the namespaces and who is interested in
  what; ``AppServices`` finds a service by token, by ID, by user or alias.
- ``scheduler.py``: the push side: events of interest, queued per service in
  the database, sent as transactions one at a time with backoff.
- ``client.py``: the HTTP requests this server makes to the services
  (transactions, user and alias queries, third-party lookups, ping).

docs/appservices.md has the whole picture.
"""
