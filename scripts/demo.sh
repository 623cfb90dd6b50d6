#!/usr/bin/env bash
# Train the demo shop (if needed) and start it on http://127.0.0.1:5005
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m bot train
exec .venv/bin/python -m bot run "$@"
