"""Issue 13's decoders (Qwen3, Gemma, Gemma 2, Phi-3, OPT, GPT-NeoX) x every head transformers has, against the oracle
on tiny random checkpoints: logits and loss, left-padded batches against single runs, the KV-cache path against a full
forward, and generate()'s greedy / beam ids against the oracle's own .generate()."""
import logging
from pathlib import Path

import pytest
import torch
import transformers

import leanformers
from oracle import assert_close, max_diff, random_inputs, save_tiny

pytestmark = pytest.mark.usefixtures("one_thread")
transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)

VOCAB = 97
INIT = 0.1  # larger than transformers' 0.02 so that a wrong op shows in the logits
_COMMON = dict(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=3, num_attention_heads=6, intermediate_size=37,
               max_position_embeddings=64, initializer_range=INIT, bos_token_id=1, eos_token_id=2, pad_token_id=0)
_OPT = {k: v for k, v in _COMMON.items() if k not in ("intermediate_size", "initializer_range")}
_GEMMA = dict(_COMMON, num_key_value_heads=2, head_dim=10)


def _random_norms(model):
    """Norm weights drawn away from their init (ones / Gemma's zeros), so that a norm applied wrong shows."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and param.dim() == 1:
                param.add_(0.3 * torch.randn(param.shape, generator=g))
    return model


# case -> (class-name prefix of the oracle, config, oracle attention implementation)
TINY = {
    "qwen3": ("Qwen3", lambda: transformers.Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=12), None),
    "qwen3-window": ("Qwen3", lambda: transformers.Qwen3Config(
        **_COMMON, num_key_value_heads=3, head_dim=8, attention_bias=True, use_sliding_window=True, sliding_window=3,
        max_window_layers=1), None),
    "gemma": ("Gemma", lambda: transformers.GemmaConfig(**_GEMMA), None),
    # eager: transformers' SDPA path drops the attention soft-capping that Gemma 2 was trained with
    "gemma2": ("Gemma2", lambda: transformers.Gemma2Config(
        **_GEMMA, sliding_window=4, query_pre_attn_scalar=16, attn_logit_softcapping=3.0,
        final_logit_softcapping=5.0), "eager"),
    "phi3": ("Phi3", lambda: transformers.Phi3Config(**_COMMON, num_key_value_heads=2), None),
    "phi3-partial-window": ("Phi3", lambda: transformers.Phi3Config(
        **_COMMON, num_key_value_heads=3, partial_rotary_factor=0.5, sliding_window=4), None),
    # LongRoPE (Phi-3.5): short factors within the original 5 positions, long ones past them. The prompts here
    # pass 5 already: transformers re-runs the whole sequence when a generation crosses the limit (its
    # prepare_inputs_for_generation drops the cache), which our generate() does not do
    "phi3-longrope": ("Phi3", lambda: transformers.Phi3Config(
        **_COMMON, num_key_value_heads=2, original_max_position_embeddings=5, rope_scaling={
            "type": "longrope", "short_factor": [1.0, 1.5, 2.0, 1.2], "long_factor": [3.0, 5.0, 9.0, 2.0]}),
        None),
    "opt": ("OPT", lambda: transformers.OPTConfig(**_OPT, ffn_dim=37, init_std=INIT), None),
    "opt-post-norm": ("OPT", lambda: transformers.OPTConfig(
        **_OPT, ffn_dim=37, init_std=INIT, do_layer_norm_before=False), None),
    "gpt_neox": ("GPTNeoX", lambda: transformers.GPTNeoXConfig(**_COMMON, rotary_pct=0.5), None),
    "gpt_neox-sequential": ("GPTNeoX", lambda: transformers.GPTNeoXConfig(
        **_COMMON, rotary_pct=1.0, use_parallel_residual=False, attention_bias=False), None),
}
HEADS = {"lm": "ForCausalLM", "base": "Model", "seq": "ForSequenceClassification", "tok": "ForTokenClassification",
         "qa": "ForQuestionAnswering"}
HAS = {"qwen3": ("lm", "base", "seq", "tok"), "gemma": ("lm", "base", "seq", "tok"),
       "gemma2": ("lm", "base", "seq", "tok"), "phi3": ("lm", "base", "seq", "tok"),
       "opt": ("lm", "base", "seq", "qa"), "gpt_neox": tuple(HEADS)}
VARIANTS = {"qwen3-window", "phi3-partial-window", "phi3-longrope", "opt-post-norm", "gpt_neox-sequential"}
ARCHITECTURES = sorted(set(TINY) - VARIANTS)
CASES = [(case, head) for case in TINY for head in HEADS
         if (case in VARIANTS and head == "lm") or head in HAS.get(case, ())]


def _oracle(case, head="lm"):
    prefix, make_config, attention = TINY[case]
    config = make_config()
    config.num_labels = 3
    if attention:
        config._attn_implementation = attention
    torch.manual_seed(0)
    return _random_norms(getattr(transformers, prefix + HEADS[head])(config).eval())


def _run(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kwargs)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(case, head) -> (oracle model, saved folder), built once."""
    made = {}

    def get(case, head="lm"):
        if (case, head) not in made:
            theirs = _oracle(case, head)
            made[case, head] = theirs, save_tiny(theirs, tmp_path_factory.mktemp(case))
        return made[case, head]
    return get


@pytest.mark.parametrize("case,head", CASES)
def test_head_checkpoint_parity(case, head, checkpoints):
    theirs, folder = checkpoints(case, head)
    ours = getattr(leanformers, TINY[case][0] + HEADS[head]).from_pretrained(folder)
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    ids, mask = random_inputs(VOCAB, batch=3, length=11, special=(2,))
    ids = ids.masked_fill(mask == 0, 0)  # pad id 0 where padded: classifiers read the last non-pad token
    expected, got = _run(theirs, ids, mask), _run(ours, ids, mask)
    keys = {"base": ["last_hidden_state"], "qa": ["start_logits", "end_logits"]}.get(head, ["logits"])
    if head != "seq":  # per token: the real tokens only
        expected, got = ({key: output[key][mask.bool()] for key in keys} for output in (expected, got))
    assert_close(expected, got, keys=keys, what=f"{case} {head}")
    if head == "lm":
        labels = ids.masked_fill(mask == 0, -100)
        assert_close(_run(theirs, ids, mask, labels=labels), _run(ours, ids, mask, labels=labels), keys=["loss"])


def _left_padded(batch=3, length=10, seed=1):
    return random_inputs(VOCAB, batch=batch, length=length, seed=seed, pad_right=False, special=(2,))


@pytest.mark.parametrize("case", sorted(TINY))
def test_left_padded_batch_and_cache_equal_full_forward(case, checkpoints):
    """A left-padded batch equals each row alone (OPT: positions from the mask, as its own forward counts them;
    the others: position ids as generate() passes them); the KV cache in chunks equals the full forward."""
    theirs, folder = checkpoints(case)
    ours = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = _left_padded()
    extra = {} if case.startswith("opt") else {"position_ids": (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)}
    full = _run(ours, ids, mask, **extra).logits
    real = mask.bool()
    assert max_diff(_run(theirs, ids, mask, **extra).logits[real], full[real]) <= 1e-4
    if case == "phi3-longrope":  # by design its frequencies follow the longest position of the call (transformers')
        return
    for i in range(ids.shape[0]):
        alone = _run(ours, ids[i:i + 1, real[i]], None).logits[0]
        assert max_diff(full[i][real[i]], alone) <= 1e-4, f"row {i} differs from running alone"
    cache, pieces, start = None, [], 0
    for stop in (6, 7, 8, 10):  # a chunk, then single tokens, then a chunk of two
        step = {k: v[:, start:stop] for k, v in extra.items()}
        out = _run(ours, ids[:, start:stop], mask[:, :stop], past_key_values=cache, use_cache=True, **step)
        cache, start = out.past_key_values, stop
        pieces.append(out.logits)
    assert max_diff(torch.cat(pieces, 1)[real], full[real]) <= 1e-4


GREEDY, BEAM = dict(do_sample=False), dict(num_beams=3, num_return_sequences=2)


@pytest.mark.parametrize("case,search", [(c, GREEDY) for c in sorted(TINY)] + [(c, BEAM) for c in sorted(TINY)],
                         ids=lambda v: v if isinstance(v, str) else ("beam" if "num_beams" in v else "greedy"))
def test_generate_matches_oracle(case, search, checkpoints):
    theirs, folder = checkpoints(case)
    ours = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = _left_padded(batch=3, length=6, seed=3)
    settings = dict(max_new_tokens=7, pad_token_id=0, **search)
    expected = theirs.generate(ids, attention_mask=mask, **settings)
    got = ours.generate(ids, attention_mask=mask, **settings)
    assert torch.equal(expected, got), f"{case}: {expected.tolist()} != {got.tolist()}"


@pytest.mark.parametrize("case", ARCHITECTURES)
def test_auto_classes_and_base_checkpoint(case, checkpoints):
    """Auto classes pick our class by model_type; a head checkpoint loads into the base model."""
    theirs, folder = checkpoints(case, "seq")
    prefix = TINY[case][0]
    assert type(leanformers.AutoModelForSequenceClassification.from_pretrained(folder)).__name__ == \
        prefix + "ForSequenceClassification"
    base = leanformers.AutoModel.from_pretrained(folder)
    assert type(base).__name__ == prefix + "Model"
    ids, mask = random_inputs(VOCAB, special=(2,))
    real = mask.bool()
    assert max_diff(_run(theirs.base_model, ids, mask).last_hidden_state[real],
                    _run(base, ids, mask).last_hidden_state[real]) <= 1e-4


@pytest.mark.parametrize("case", ["gemma2", "gpt_neox", "qwen3"])
def test_hidden_states_and_attentions(case, checkpoints):
    """output_hidden_states / output_attentions (the eager path, with Gemma 2's soft-capping) equal the oracle's."""
    theirs, folder = checkpoints(case)
    ours = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = random_inputs(VOCAB, special=(2,))
    theirs.config._attn_implementation = "eager"  # attentions come from the eager path
    expected = _run(theirs, ids, mask, output_hidden_states=True, output_attentions=True)
    got = _run(ours, ids, mask, output_hidden_states=True, output_attentions=True)
    real = mask.bool()
    assert len(got.hidden_states) == len(expected.hidden_states)
    for a, b in zip(expected.hidden_states, got.hidden_states):
        assert max_diff(a[real], b[real]) <= 1e-4
    for a, b in zip(expected.attentions, got.attentions):  # queries of real tokens, over every key
        assert max_diff(a.transpose(1, 2)[real], b.transpose(1, 2)[real]) <= 1e-4


def test_fused_checkpoint_tensors_round_trip(checkpoints):
    """Phi-3's gate_up and GPT-NeoX's per-head query_key_value: split on loading, and SplitRows.inverse gives the
    checkpoint's tensors back bit for bit (what save_pretrained needs)."""
    from leanformers.modeling.auto import spec_for
    from safetensors.torch import load_file

    for case, fused in (("phi3", "model.layers.1.mlp.gate_up_proj.weight"),
                        ("gpt_neox", "gpt_neox.layers.1.attention.query_key_value.bias")):
        theirs, folder = checkpoints(case)
        ours = leanformers.AutoModelForCausalLM.from_pretrained(folder)
        spec = spec_for(theirs.config.model_type)
        ours_state = {k: v for k, v in ours.state_dict().items() if ".layers.1." in k}
        back = spec.convert.inverse(ours_state, ours.config)
        joined = next(v for k, v in back.items() if k.endswith(fused.split("layers.1.")[1].replace(
            "gate_up_proj", "gate_up").replace("attention.query_key_value", "attention.qkv_per_head")))
        assert torch.equal(joined, load_file(f"{folder}/model.safetensors")[fused])


# ------------------------------------------------------------------ GGUF files (llama.cpp's layout) of the new decoders
_GGUF_SIZES = dict(hidden_size=64, num_attention_heads=4, intermediate_size=96)  # rows of 32-value blocks
GGUF_TINY = {  # architecture -> a transformers config whose sizes the GGUF metadata carries (sliding windows off: a
    # GGUF file for Qwen3 / Phi-3 names none, and the oracle's Gemma 2 reads its window from the file)
    "qwen3": lambda: transformers.Qwen3Config(**{**_COMMON, **_GGUF_SIZES}, num_key_value_heads=2, head_dim=128,
                                              rms_norm_eps=1e-5),
    "phi3": lambda: transformers.Phi3Config(**{**_COMMON, **_GGUF_SIZES}, num_key_value_heads=2),
    "gemma2": lambda: transformers.Gemma2Config(**{**_GEMMA, **_GGUF_SIZES, "head_dim": 256}, sliding_window=4,
                                                 rms_norm_eps=1e-5),
}
# what llama.cpp's converter stores each tensor as: block quantizations for the big matrices, F32 for norms
GGUF_STORED = {"token_embd": "Q8_0", "attn_q": "F16", "attn_k": "Q8_0", "attn_qkv": "Q8_0", "ffn_up": "Q8_0",
               "ffn_down": "F16"}


def _write_gguf(path, architecture, hf_model):
    """A GGUF file as convert_hf_to_gguf writes one for this transformers model: gguf-py's tensor names, Gemma 2's
    norms stored as 1 + w, metadata under "<arch>.", and the tiny byte-level / SentencePiece vocabulary of
    test_gguf."""
    import gguf
    import numpy as np
    from test_gguf import write_tokenizer

    config = hf_model.config
    arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == architecture)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_theta)
    if architecture in ("qwen3", "gemma2"):
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    if architecture == "gemma2":
        writer.add_sliding_window(config.sliding_window)
        writer.add_attn_logit_softcapping(config.attn_logit_softcapping)
        writer.add_final_logit_softcapping(config.final_logit_softcapping)
    write_tokenizer(writer, "gpt2" if architecture == "qwen3" else "llama")
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)  # else Phi-3's config default (32000) lies outside the tiny vocabulary
    for hf_name, tensor in hf_model.state_dict().items():
        stem, suffix = hf_name.rsplit(".", 1)
        name = names.get_name(stem)
        if name is None and config.tie_word_embeddings and stem == "lm_head":
            continue  # tied: the file keeps the embeddings only
        weights = tensor.numpy().astype(np.float32)
        if architecture == "gemma2" and stem.endswith("norm"):
            weights = weights + 1
        kind = GGUF_STORED.get(name.split(".")[-1], "F32") if suffix == "weight" else "F32"
        if kind == "F16":
            writer.add_tensor(f"{name}.{suffix}", weights.astype(np.float16))
        elif kind == "Q8_0":
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(f"{name}.{suffix}", gguf.quants.quantize(weights, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(f"{name}.{suffix}", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("architecture", sorted(GGUF_TINY))
def test_gguf_file_equals_oracle(architecture, tmp_path):
    """A tiny GGUF file of each llama.cpp-supported new decoder: our config, dequantized tensors (HF names) and
    tokenizer equal transformers' GGUF loader's; the model loaded from it gives the oracle's logits and greedy ids."""
    from test_gguf import assert_state_dict_equal, assert_tokenizer_equal, oracle_config_and_tensors, tiny_vocab
    from test_gguf import tiny_sentencepiece_vocab

    from leanformers.gguf import load_gguf

    vocab = len(tiny_vocab() if architecture == "qwen3" else tiny_sentencepiece_vocab())
    config = GGUF_TINY[architecture]()
    config.vocab_size = vocab
    torch.manual_seed(0)
    source = _random_norms(getattr(transformers, TINY[architecture][0] + "ForCausalLM")(config).eval())
    path = _write_gguf(tmp_path / f"{architecture}.gguf", architecture, source)

    checkpoint = load_gguf(path)
    oracle_config, tensors = oracle_config_and_tensors(path)
    assert_state_dict_equal(checkpoint.state_dict, tensors)
    for key in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "sliding_window"):
        assert checkpoint.config.get(key) == getattr(oracle_config, key, None), key
    theirs = transformers.AutoModelForCausalLM.from_config(oracle_config, attn_implementation="eager").eval()
    theirs.load_state_dict(tensors, strict=False)
    theirs.tie_weights()
    ours = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    assert type(ours).__name__ == TINY[architecture][0] + "ForCausalLM"
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    ids, mask = random_inputs(vocab, batch=2, length=8, special=(2,))
    real = mask.bool()
    assert max_diff(_run(theirs, ids, mask).logits[real], _run(ours, ids, mask).logits[real]) <= 1e-4
    left_ids, left_mask = random_inputs(vocab, batch=2, length=6, seed=3, pad_right=False, special=(2,))
    settings = dict(max_new_tokens=6, pad_token_id=0, do_sample=False)
    assert torch.equal(theirs.generate(left_ids, attention_mask=left_mask, **settings),
                       ours.generate(left_ids, attention_mask=left_mask, **settings))
    texts = ["hello the world", " the world hi", "hi  there\nworld", "café 🤗 x\ny"]
    if architecture == "qwen3":
        oracle_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
        assert_tokenizer_equal(checkpoint.tokenizer_object, oracle_tokenizer, texts)
    else:  # SentencePiece files: we tokenize as llama.cpp (BPE by score, "▁" for spaces, byte fallback); the
        # oracle's GGUF converters depart from it (Phi-3: no space normalizer; Gemma: a Unigram model)
        for text in texts:
            ids = checkpoint.tokenizer_object.encode(text, add_special_tokens=False).ids
            assert checkpoint.tokenizer_object.decode(ids) == text


def test_pythia_checkpoint_buffers_are_ignored(checkpoints, tmp_path):
    """Pythia's files carry per-layer causal-mask and rotary buffers (attention.bias, attention.masked_bias,
    attention.rotary_emb.inv_freq): no model reads them, and loading says nothing about them."""
    import shutil

    from safetensors.torch import load_file, save_file

    theirs, folder = checkpoints("gpt_neox")
    for name in ("config.json", "generation_config.json"):
        shutil.copy(f"{folder}/{name}", tmp_path / name)
    state = load_file(f"{folder}/model.safetensors")
    for i in range(theirs.config.num_hidden_layers):
        layer = f"gpt_neox.layers.{i}.attention."
        state[layer + "bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()
        state[layer + "masked_bias"] = torch.tensor(-1e9)
        state[layer + "rotary_emb.inv_freq"] = torch.ones(2)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert not ours.loading_info["unexpected_keys"] and not ours.loading_info["missing_keys"], ours.loading_info
    ids, mask = random_inputs(VOCAB, special=(2,))
    real = mask.bool()
    assert max_diff(_run(theirs, ids, mask).logits[real], _run(ours, ids, mask).logits[real]) <= 1e-4


def test_opt_350m_layout_is_refused_clearly():
    config = transformers.OPTConfig(**_OPT, ffn_dim=37, word_embed_proj_dim=16, do_layer_norm_before=False)
    with pytest.raises(NotImplementedError, match="word_embed_proj_dim=16"):
        leanformers.AutoModelForCausalLM.from_config(config)


GPT2_VOCAB = Path(__file__).resolve().parents[1] / ".models" / "gpt2_vocab"
PROMPTS = ["Hello, my dog is", "The capital of France", "Once upon a time there was a very long", "A"]


@pytest.mark.skipif(not (GPT2_VOCAB / "vocab.json").exists(), reason="run scripts/fetch_models.sh")
@pytest.mark.parametrize("case", ["qwen3", "gemma2", "phi3", "opt", "gpt_neox"])
def test_text_generation_pipeline(case, tmp_path):
    """text-generation on each new decoder (tiny, the real GPT-2 vocabulary) equals transformers' pipeline, one by one
    and in left-padded batches."""
    import json
    import shutil

    prefix, make_config, attention = TINY[case]
    config = make_config()
    config.vocab_size, config.bos_token_id, config.eos_token_id, config.pad_token_id = 50257, 50256, 50256, None
    if attention:
        config._attn_implementation = attention
    torch.manual_seed(0)
    _random_norms(getattr(transformers, prefix + "ForCausalLM")(config).eval()).save_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_VOCAB / name, tmp_path / name)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer",
                                                                "model_max_length": 64}))
    theirs = transformers.pipeline("text-generation", model=str(tmp_path))
    if attention:
        theirs.model.config._attn_implementation = attention
    call = {"do_sample": False, "max_new_tokens": 6}
    expected = theirs(PROMPTS, **call)
    assert leanformers.pipeline("text-generation", model=str(tmp_path))(PROMPTS, **call) == expected
    assert leanformers.pipeline("text-generation", model=str(tmp_path), batch_size=3)(PROMPTS, **call) == expected
