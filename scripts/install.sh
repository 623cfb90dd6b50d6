#!/usr/bin/env bash
# Install kefu into ./.venv (CPU torch first, then the pinned dependency set).
#   bash scripts/install.sh          # runtime
#   bash scripts/install.sh --test   # + test tools, Debian's redis-server and postgresql
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

need_apt=()
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
python3 -c "import ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
if [[ $WITH_TEST == 1 ]]; then
    command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
    command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # self-signed certificates for the TLS test
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)  # the load balancer of the cluster tests
    # PostgreSQL store tests start their own server (tests/postgres_server.py) from these binaries.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need_apt+=(postgresql)
    # Browser tests drive Debian's Chromium (Playwright can't download its own here);
    # the CJK font makes Chinese text render in screenshots.
    [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
    fc-list 2>/dev/null | grep -qi "wenquanyi zen hei" || need_apt+=(fonts-wqy-zenhei)
fi
if (( ${#need_apt[@]} )); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
PIP=".venv/bin/pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
# torch first: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" >/dev/null 2>&1 || $PIP install -q torch==2.13.0
if [[ $WITH_TEST == 1 ]]; then
    $PIP install -q -e '.[test]'
else
    $PIP install -q -e .
fi
# The dashboard's charts (/dashboard): Apache ECharts from the npm registry, pinned, served by kefu
# itself (never a CDN at run time). 1 MB minified, so fetched here rather than vendored.
fetch_echarts() {
    local version="6.1.0" target="connectors/static/dashboard/vendor/echarts.min.js" tmp
    [[ -f "$target" ]] && grep -q "$version" "$target.version" 2>/dev/null && return 0
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: the dashboard shows tables without charts (apt-get install npm, rerun)" >&2
        return 0
    fi
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "echarts@$version" >/dev/null && tar -xzf "echarts-$version.tgz" package/dist/echarts.min.js)
    cp "$tmp/package/dist/echarts.min.js" "$target" && echo "$version" > "$target.version"
    rm -rf "$tmp"
}
fetch_echarts
echo "kefu installed in .venv"
