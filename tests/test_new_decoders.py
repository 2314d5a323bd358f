"""Issue 13's decoders (Qwen3, Gemma, Gemma 2, Phi-3, OPT, GPT-NeoX) x every head transformers has, against the oracle
on tiny random checkpoints: logits and loss, left-padded batches against single runs, the KV-cache path against a full
forward, and generate()'s greedy / beam ids against the oracle's own .generate()."""
import logging

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
VARIANTS = {"qwen3-window", "phi3-partial-window", "opt-post-norm", "gpt_neox-sequential"}
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
