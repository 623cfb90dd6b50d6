"""HTTP helpers below the server, the channels and the feature blueprints.

``errors`` (Rasa's error body and the one exception→status map), ``requests``
(body and query parsing that answers 400s naming the parameter) and ``auth``
(token/JWT checks). This package imports only ``bot.shared``, ``bot.version``,
sanic and jwt, so ``connectors/`` and features can use it without importing
the server (tests/test_layers.py guards that).
"""
