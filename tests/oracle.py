"""Shared helpers for parity tests against the oracle (transformers 4.57.6) on tiny random checkpoints."""
from __future__ import annotations

import os
from pathlib import Path

import torch

MODELS = Path(__file__).resolve().parents[1] / ".models"
ATOL = 1e-4


def save_tiny(hf_model, folder, safe: bool = True) -> str:
    """save_pretrained a (seeded, random) oracle model; safe=False writes pytorch_model.bin instead."""
    folder = str(folder)
    hf_model.save_pretrained(folder, safe_serialization=safe)
    return folder


def random_inputs(vocab_size: int, batch: int = 3, length: int = 9, seed: int = 0, pad_right: bool = True,
                  special: tuple[int, ...] = ()):
    """(input_ids, attention_mask) of mixed lengths: row i has length - 2*i real tokens (padding on one side)."""
    g = torch.Generator().manual_seed(seed)
    low = max(special) + 1 if special else 0
    ids = torch.randint(low, vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(batch):
        n = max(length - 2 * i, 2)
        if pad_right:
            mask[i, n:] = 0
        else:
            mask[i, : length - n] = 0
    return ids, mask


def max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def assert_close(theirs, ours, keys=None, atol=ATOL, what=""):
    """Every tensor field of the oracle's output (or `keys`) equals ours within atol."""
    keys = keys or [k for k, v in theirs.items() if isinstance(v, torch.Tensor)]
    assert keys, "nothing to compare"
    for key in keys:
        a, b = theirs[key], ours[key]
        assert a.shape == b.shape, f"{what} {key}: shape {tuple(a.shape)} vs ours {tuple(b.shape)}"
        diff = max_diff(a, b)
        assert diff <= atol, f"{what} {key}: max abs diff {diff:.3g} > {atol}"


def assert_padded_equals_alone(model, ids, mask, key="logits", atol=ATOL, **extra):
    """A padded mixed-length batch gives, on its real tokens, what each sentence gives run alone."""
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask, **extra)[key]
        for i in range(ids.shape[0]):
            keep = mask[i].bool()
            alone = model(input_ids=ids[i:i + 1, keep], attention_mask=mask[i:i + 1, keep],
                          **{k: v[i:i + 1, keep] for k, v in extra.items()})[key]
            row = batched[i]
            if row.dim() >= 1 and alone.dim() == row.dim() + 1 and row.shape[0] == ids.shape[1]:
                row = row[keep]  # per-token outputs: compare the real tokens only
            diff = max_diff(row, alone[0])
            assert diff <= atol, f"row {i}: padded batch differs from running alone by {diff:.3g}"


def assert_cache_path_equals_full_forward(model, ids, mask, decoder_ids, prefill: int = 3, tuple_encoder_outputs=False):
    """An encoder-decoder: prefill `prefill` decoder tokens, then one at a time against the cache, gives the logits of
    one full forward; the cross-attention K/V are kept in the cache (computed once). `tuple_encoder_outputs` passes
    the encoder output to the later steps as a plain tuple, as some callers do."""
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=mask)
        step = model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=decoder_ids[:, :prefill],
                     use_cache=True)
        pieces, cache = [step.logits], step.past_key_values
        later = (encoder_outputs.last_hidden_state,) if tuple_encoder_outputs else encoder_outputs
        for t in range(prefill, decoder_ids.shape[1]):
            step = model(encoder_outputs=later, attention_mask=mask, decoder_input_ids=decoder_ids[:, t:t + 1],
                         past_key_values=cache, use_cache=True)
            pieces.append(step.logits)
            cache = step.past_key_values
    assert cache.cross[0] is not None  # cross-attention K/V kept, computed once
    assert max_diff(full, torch.cat(pieces, dim=1)) <= ATOL


# generate() settings that seq2seq parity tests run (beam: transformers' defaults for summarization-like use)
SEQ2SEQ_GENERATION = {
    "greedy": dict(max_new_tokens=12),
    "beam": dict(num_beams=4, max_new_tokens=12, length_penalty=0.7, no_repeat_ngram_size=3, early_stopping=True,
                 num_return_sequences=2),
    "beam-never-early": dict(num_beams=4, max_new_tokens=10, length_penalty=1.5, early_stopping="never",
                             min_new_tokens=3),
}


def assert_generate_equal(theirs, ours, ids, mask, what="", **settings):
    """ours.generate() returns the ids of the oracle's .generate() on the same inputs and settings; returns them."""
    with torch.no_grad():
        expected = theirs.generate(input_ids=ids, attention_mask=mask, **settings)
    got = ours.generate(input_ids=ids, attention_mask=mask, **settings)
    assert got.shape == expected.shape and torch.equal(got, expected), f"{what} {settings}:\n{expected}\n{got}"
    return expected


def hf_cache_layout(root, repo_id: str, source_folder, revision_hash: str = "0" * 40) -> str:
    """Place a saved checkpoint under HF_HUB_CACHE as transformers' own cache would (refs/main -> snapshot)."""
    repo_dir = Path(root) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision_hash
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision_hash)
    for name in os.listdir(source_folder):
        src = Path(source_folder) / name
        if src.is_file():
            (snapshot / name).write_bytes(src.read_bytes())
    return str(snapshot)


def offline_hub(monkeypatch, root) -> str:
    """Point leanformers, huggingface_hub and the oracle at an empty offline HF cache under `root`."""
    import huggingface_hub.constants as constants
    import transformers.utils.hub as transformers_hub

    root = str(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", root)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", root)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers_hub, "TRANSFORMERS_CACHE", root)  # captured when transformers was imported
    return root
