#!/usr/bin/env bash
# Run the whole test suite. Tests that need Redis start their own redis-server on
# 127.0.0.1 (tests/redis_server.py), tests that need PostgreSQL their own server from
# Debian's postgresql package (tests/postgres_server.py); nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
