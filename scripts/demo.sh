#!/usr/bin/env bash
# Set up (if needed) and run the main job offline on the real shipped models:
# 1. chat with SmolLM2-135M-Instruct (GGUF Q4_1) through the text-generation pipeline, greedy;
# 2. sentence similarity with all-MiniLM-L6-v2 through the feature-extraction pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/leanformers text-generation "What is the capital of France?" --chat \
  --model .models/smollm2 --gguf-file SmolLM2-135M-Instruct.Q4_1.gguf --max-new-tokens 16 --option do_sample=false
.venv/bin/python examples/similarity.py
