"""Sentence similarity with the real all-MiniLM-L6-v2 through the feature-extraction pipeline, offline.

pooling="auto" reads the checkpoint's sentence-transformers settings (mean pooling, normalised embeddings).
"""
import sys
from pathlib import Path

from leanformers import pipeline

folder = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".models" / "minilm"
embed = pipeline("feature-extraction", model=str(folder), pooling="auto", return_tensors=True)
sentences = ["A man is eating food.", "A man is eating a piece of bread.", "Someone is having a meal.",
             "The stock market crashed today."]
embeddings = [e.reshape(-1) for e in embed(sentences, batch_size=4)]
for sentence, embedding in zip(sentences[1:], embeddings[1:]):
    print(f"{float(embeddings[0] @ embedding):.3f}  {sentences[0]!r} vs {sentence!r}")
