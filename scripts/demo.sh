#!/usr/bin/env bash
# Set up (if needed) and run the main job offline on the real shipped models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/python examples/similarity.py
