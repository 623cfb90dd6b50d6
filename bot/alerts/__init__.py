"""Operational alerts for supervisors: alerts.yml rules, evaluated in the background (docs/operations.md)."""
