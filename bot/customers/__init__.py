"""Customer 360: one customer across channels, a computed profile, a health score, one timeline.

``docs/customers.md`` states the merge rules and the project files (``customers.yml``,
``health.yml``); ``feature.py`` plugs it into the server.
"""
