"""Operations analytics: satisfaction surveys after every conversation, incremental rollups, the dashboard.

``config.py`` (the ``analytics:`` section), ``schema.py`` (the one SQLAlchemy
MetaData), ``store.py`` (rollups and survey rows), ``ingest.py`` (broker events →
rollups), ``metrics.py`` (definitions and figures), ``survey.py`` (the conversation-end
survey and its processor hook), ``api.py`` (the page and its data routes),
``feature.py``. Docs: docs/dashboard.md.
"""
