"""The trainer workbench: review real traffic, annotate, retrain behind a gate, model registry (docs/workbench.md)."""
