"""Privacy: retention of conversations and per-customer export and erasure (PIPL/GDPR).

``config.py`` reads ``privacy:``; ``service.py`` finds, exports, erases and purges one
customer's data across the tracker store, handoffs, triggers and the project's
``ports: erasure``; ``feature.py`` serves it (admin routes, the retention task);
``cli.py`` is ``python -m bot data export|erase|purge``. Log masking is
``bot/shared/masking.py``.
"""
from __future__ import annotations

from bot.privacy.config import PrivacyConfig
from bot.privacy.service import PrivacyService

__all__ = ["PrivacyConfig", "PrivacyService"]
