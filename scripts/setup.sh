#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the pinned CPU torch, leanformers with its
# extras and test oracle, Debian's chromium (the playground test), and the real pretrained files of
# ../shared/MODELS.md in .models/. Safe to re-run: the pip step runs again only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ] || ! .venv/bin/python -c "import leanformers, transformers, torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[test]"
  touch "$stamp"
fi
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
PATH="$PWD/.venv/bin:$PATH" bash scripts/fetch_models.sh >/dev/null
