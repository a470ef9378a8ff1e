"""Persistence: the turn store and (later) the timeline store, behind protocols with SQLite backends."""
