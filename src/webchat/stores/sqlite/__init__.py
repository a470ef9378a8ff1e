"""SQLite backends."""
