"""`python -m actions.shop seed|import ...` (see actions/shop/cli.py).

Guarded: rasa_sdk imports every module of the actions package when it registers actions.
"""
from __future__ import annotations

import sys

from actions.shop.cli import main

if __name__ == "__main__":
    sys.exit(main())
