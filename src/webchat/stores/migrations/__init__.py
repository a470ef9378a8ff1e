"""Versioned, additive, idempotent schema migrations, legacy-layout upgrades, backfill and checks."""
