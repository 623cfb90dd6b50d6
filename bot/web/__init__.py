"""HTTP helpers below the server, the channels and the feature blueprints.

``errors`` (Rasa's error body and the one exception→status map), ``requests``
(body and query parsing that answers 400s naming the parameter), ``principals``
(roles and scopes: the one table of who may do what), ``auth`` (the request's principal
from verified credentials, ``requires_scope``), ``audit`` (recording transcript reads in
``app.ctx.audit``) and ``tokens`` (``python -m bot token create``). This package imports only ``bot.shared``, ``bot.version``,
sanic and jwt, so ``connectors/`` and features can use it without importing
the server (tests/test_layers.py guards that).
"""
