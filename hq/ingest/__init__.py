"""Ingest: every box's events into HQ's database (``eventstore``), from MQTT (``worker``)."""
