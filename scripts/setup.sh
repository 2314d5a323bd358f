#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the pinned CPU torch, leanformers and its
# test oracle, and the real pretrained files of ../shared/MODELS.md in .models/. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if ! .venv/bin/python -c "import leanformers, transformers, torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[test]"
fi
PATH="$PWD/.venv/bin:$PATH" bash scripts/fetch_models.sh >/dev/null
