"""Quality of the quantized modes against float32, shared by tests/test_quant_*.py and bench/bench_quant.py.

perplexity(): SmolLM2 on a fixed slice of botchan.txt (the sentencepiece test text): its first 1024 tokens in 16
independent windows of 64 tokens (64 rows per pass: the int4 kernel's path, as in prompts and short decodes)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BOTCHAN = ROOT / ".models" / "spm" / "botchan.txt"
SMOLLM2 = ROOT / ".models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
WINDOW, WINDOWS = 64, 16


def botchan_ids(tokenizer, windows: int = WINDOWS) -> torch.Tensor:
    """(windows, WINDOW) token ids: the first windows * WINDOW tokens of botchan.txt."""
    text = BOTCHAN.read_text(encoding="utf-8")
    ids = tokenizer(text[:20000])["input_ids"][:WINDOW * windows]
    assert len(ids) == WINDOW * windows, "botchan.txt is shorter than expected"
    return torch.tensor(ids).view(windows, WINDOW)


@torch.no_grad()
def perplexity(model, windows: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) over the windows, each run alone (one row of 64 tokens per pass)."""
    total, count = 0.0, 0
    for row in windows:
        logits = model(row[None]).logits[0, :-1].float()
        total += torch.nn.functional.cross_entropy(logits, row[1:], reduction="sum").item()
        count += row.numel() - 1
    return math.exp(total / count)
