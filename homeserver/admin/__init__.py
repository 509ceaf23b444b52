"""Server administration: the use cases behind Synapse's admin API
(``synapse_compat/admin/``). Every action an admin takes is logged on the
``homeserver.admin.audit`` logger (``audit.py``): who, what, on whom."""
