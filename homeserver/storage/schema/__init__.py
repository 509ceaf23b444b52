"""Schema migrations, as data files: see homeserver/storage/migrations.py."""
