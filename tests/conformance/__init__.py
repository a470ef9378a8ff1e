"""One suite per store protocol, run against every backend (SQLite and PostgreSQL) alike."""
