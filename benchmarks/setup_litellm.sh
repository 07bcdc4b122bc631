#!/bin/sh
# Install LiteLLM's proxy into its own venv under .bench/ (git-ignored), for bench_gateway.py only.
# About 2 minutes and 740 MB the first time; reused afterwards. Nothing of LiteLLM is a dependency
# of aivitals.
set -eu
cd "$(dirname "$0")/.."
VENV=.bench/litellm-venv
PYTHON=${PYTHON:-python3}
if [ -x "$VENV/bin/litellm" ] && "$VENV/bin/python" -c "import litellm.proxy.proxy_server" 2>/dev/null; then
    exit 0
fi
mkdir -p .bench
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet 'litellm[proxy]' prisma
