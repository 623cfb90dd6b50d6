#!/usr/bin/env bash
# Train the demo shop (if needed) and start it on http://127.0.0.1:5005, with the management
# API behind a token generated on the first run (.kefu/api-token, mode 0600, git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
TOKEN_FILE=.kefu/api-token
if [[ ! -s $TOKEN_FILE ]]; then
    mkdir -p -m 700 .kefu
    (umask 077 && .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(32))" > "$TOKEN_FILE")
    echo "Generated an API token in $TOKEN_FILE (keep it secret; delete the file to get a new one)."
fi
chmod 600 "$TOKEN_FILE"
.venv/bin/python -m bot train
# The token travels in the environment, not on the command line (where `ps` would show it).
KEFU_AUTH_TOKEN="$(cat "$TOKEN_FILE")"
export KEFU_AUTH_TOKEN
cat <<EOF
The management API needs the token, e.g.:
  curl -s localhost:5005/model/parse -H "Authorization: Bearer \$(cat $TOKEN_FILE)" -d '{"text": "where is my order"}'
The REST webhook, the widget and the console (own login) need none.
EOF
exec .venv/bin/python -m bot run --enable-api "$@"
