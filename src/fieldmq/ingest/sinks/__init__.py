"""Sinks: where ingest writes (see :mod:`.base`)."""
