#!/usr/bin/env bash
# Run the whole test suite. Tests that need Redis start their own redis-server on
# 127.0.0.1 (tests/redis_server.py), tests that need PostgreSQL their own server from
# Debian's postgresql package (tests/postgres_server.py); nothing leaves the machine.
# Tests run in two pytest-xdist worker processes (KEFU_TEST_WORKERS, default 2; 0 runs them
# in this process): much of the suite waits on servers, trainings and browsers, so two
# workers on two cores take about half the wall time of one. Each worker starts its own
# redis-server/PostgreSQL and its own temporary folders.
# The longest tests (the public Rasa projects' trainings) are started first so both workers
# finish together (tests/conftest.py, LONGEST_FIRST).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -n "${KEFU_TEST_WORKERS:-2}" "$@"
