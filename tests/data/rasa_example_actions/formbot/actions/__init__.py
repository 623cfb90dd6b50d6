"""Custom actions for the example bot (imported as the `actions` package)."""
