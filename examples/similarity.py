"""Sentence similarity with the real all-MiniLM-L6-v2, offline: the README's main job."""
import sys
from pathlib import Path

import torch

from leanformers import AutoModel, AutoTokenizer

folder = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".models" / "minilm"
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder)
sentences = ["A man is eating food.", "A man is eating a piece of bread.", "Someone is having a meal.",
             "The stock market crashed today."]
inputs = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
with torch.inference_mode():
    hidden = model(**inputs).last_hidden_state
mask = inputs["attention_mask"][..., None].to(hidden.dtype)
embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
for sentence, score in zip(sentences[1:], (embeddings[0] @ embeddings[1:].T).tolist()):
    print(f"{score:.3f}  {sentences[0]!r} vs {sentence!r}")
