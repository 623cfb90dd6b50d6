"""Revisions of bot/stores/migrations (one branch per store; see docs/database.md)."""
