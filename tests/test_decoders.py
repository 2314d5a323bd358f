"""Every decoder architecture x head against the oracle on tiny random checkpoints (safetensors and .bin): logits,
the KV-cache path against a full forward, left-padded batches against single runs, the loss, and generate()'s
greedy / beam ids against the oracle's own .generate()."""
import json
import logging

import pytest
import torch
import transformers

import leanformers
from oracle import assert_close, max_diff, random_inputs, save_tiny

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)

VOCAB = 97
# init larger than transformers' 0.02 so that a wrong op shows in the logits, not only in the 7th digit
INIT = 0.1
_GPT2 = dict(vocab_size=VOCAB, n_embd=36, n_layer=3, n_head=4, n_positions=64, initializer_range=INIT,
             bos_token_id=1, eos_token_id=2, pad_token_id=0)
_LLAMA = dict(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
              intermediate_size=37, max_position_embeddings=64, initializer_range=INIT, bos_token_id=1,
              eos_token_id=2, pad_token_id=0)

# case -> (class-name prefix of the oracle, LM class suffix, config); each case runs for every head it has
TINY = {
    "gpt2": ("GPT2", "LMHeadModel", lambda: transformers.GPT2Config(**_GPT2)),
    "gpt2-scaled": ("GPT2", "LMHeadModel", lambda: transformers.GPT2Config(
        **_GPT2, scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True, n_inner=41,
        activation_function="gelu")),
    "openai-gpt": ("OpenAIGPT", "LMHeadModel", lambda: transformers.OpenAIGPTConfig(
        vocab_size=VOCAB, n_embd=36, n_layer=3, n_head=4, n_positions=64, initializer_range=INIT, pad_token_id=0)),
    "ctrl": ("CTRL", "LMHeadModel", lambda: transformers.CTRLConfig(
        vocab_size=VOCAB, n_embd=36, n_layer=3, n_head=4, n_positions=64, dff=37, initializer_range=INIT,
        pad_token_id=0)),
    "llama": ("Llama", "ForCausalLM", lambda: transformers.LlamaConfig(**_LLAMA, attention_bias=True, mlp_bias=True)),
    "llama-tied-headdim": ("Llama", "ForCausalLM", lambda: transformers.LlamaConfig(
        **_LLAMA, tie_word_embeddings=True, head_dim=10)),
    "llama-linear": ("Llama", "ForCausalLM", lambda: transformers.LlamaConfig(
        **_LLAMA, rope_scaling={"type": "linear", "factor": 2.0})),
    "llama-dynamic": ("Llama", "ForCausalLM", lambda: transformers.LlamaConfig(
        **{**_LLAMA, "max_position_embeddings": 8}, rope_scaling={"rope_type": "dynamic", "factor": 2.0})),
    "llama3": ("Llama", "ForCausalLM", lambda: transformers.LlamaConfig(
        **_LLAMA, rope_theta=500.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "llama-yarn": ("Llama", "ForCausalLM", lambda: transformers.LlamaConfig(
        **_LLAMA, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16})),
    "mistral": ("Mistral", "ForCausalLM", lambda: transformers.MistralConfig(**_LLAMA, sliding_window=4)),
    "qwen2": ("Qwen2", "ForCausalLM", lambda: transformers.Qwen2Config(**_LLAMA)),
    "qwen2-window": ("Qwen2", "ForCausalLM", lambda: transformers.Qwen2Config(
        **_LLAMA, use_sliding_window=True, sliding_window=3, max_window_layers=1)),
}
# the oracle's eager attention honours GPT-2's scale_attn_by_inverse_layer_idx; its SDPA path silently drops it
EAGER = {"gpt2-scaled"}
HEADS = {"lm": None, "base": "Model", "seq": "ForSequenceClassification", "tok": "ForTokenClassification",
         "qa": "ForQuestionAnswering"}
HAS = {"gpt2": tuple(HEADS), "openai-gpt": ("lm", "base", "seq"), "ctrl": ("lm", "base", "seq"),
       **{case: ("lm", "base", "seq", "tok") for case in ("llama", "mistral", "qwen2")}}
# variants that differ only inside attention / rotary run the LM head; the architectures run every head they have
VARIANTS = {"gpt2-scaled", "llama-tied-headdim", "llama-linear", "llama-dynamic", "llama3", "llama-yarn",
            "qwen2-window"}
ARCHITECTURES = sorted(set(TINY) - VARIANTS)
CASES = [(case, head) for case in TINY for head in HEADS
         if head in HAS.get(case, HEADS) and (case not in VARIANTS or head == "lm")]


def _oracle(case, head="lm"):
    prefix, lm, make_config = TINY[case]
    config = make_config()
    config.num_labels = 3
    if case in EAGER:
        config._attn_implementation = "eager"
    torch.manual_seed(0)
    return getattr(transformers, prefix + (HEADS[head] or lm))(config).eval()


def _ours(case, folder, head="lm"):
    prefix, lm, _ = TINY[case]
    return getattr(leanformers, prefix + (HEADS[head] or lm)).from_pretrained(folder)


def _run(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kwargs)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(case, head, safe) -> (oracle model, saved folder), built once."""
    made = {}

    def get(case, head="lm", safe=True):
        if (case, head, safe) not in made:
            theirs = _oracle(case, head)
            made[case, head, safe] = theirs, save_tiny(theirs, tmp_path_factory.mktemp(case), safe=safe)
        return made[case, head, safe]
    return get


@pytest.mark.parametrize("case,head,safe", [(c, h, True) for c, h in CASES] + [
    (c, h, False) for c, h in CASES if c in ARCHITECTURES])
def test_head_checkpoint_parity(case, head, safe, checkpoints):
    theirs, folder = checkpoints(case, head, safe)
    ours = _ours(case, folder, head)
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    ids, mask = random_inputs(VOCAB, batch=3, length=11, special=(2,))
    ids = ids.masked_fill(mask == 0, 0)  # pad id 0 where padded: classifiers read the last non-pad token
    expected, got = _run(theirs, ids, mask), _run(ours, ids, mask)
    keys = {"base": ["last_hidden_state"], "qa": ["start_logits", "end_logits"]}.get(head, ["logits"])
    if head != "seq":  # per token: the real tokens (a padded query that sees no key in its window is arbitrary)
        expected, got = ({key: output[key][mask.bool()] for key in keys} for output in (expected, got))
    assert_close(expected, got, keys=keys, what=f"{case} {head}")
    if head == "lm":
        labels = ids.masked_fill(mask == 0, -100)
        assert_close(_run(theirs, ids, mask, labels=labels), _run(ours, ids, mask, labels=labels), keys=["loss"])


def _left_padded(batch=3, length=10, seed=1):
    return random_inputs(VOCAB, batch=batch, length=length, seed=seed, pad_right=False, special=(2,))


def _positions(mask):
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


@pytest.mark.parametrize("case", sorted(TINY))
def test_left_padded_batch_and_cache_equal_full_forward(case, checkpoints):
    """A left-padded batch (positions from the mask) equals each row alone; feeding it through the KV cache in
    chunks and single tokens equals the full forward; the oracle agrees on the real tokens."""
    theirs, folder = checkpoints(case)
    if case == "llama-dynamic":  # its rotary keeps the longest length seen so far: start from a fresh oracle
        theirs = _oracle(case)
    ours = _ours(case, folder)
    ids, mask = _left_padded()
    positions = _positions(mask)
    full = _run(ours, ids, mask, position_ids=positions).logits
    expected = _run(theirs, ids, mask, position_ids=positions).logits
    real = mask.bool()
    assert max_diff(expected[real], full[real]) <= 1e-4
    if case == "llama-dynamic":  # by design its frequencies follow the longest position seen (transformers' too)
        return
    for i in range(ids.shape[0]):
        alone = _run(ours, ids[i:i + 1, real[i]], None).logits[0]
        assert max_diff(full[i][real[i]], alone) <= 1e-4, f"row {i} differs from running alone"
    cache, pieces, start = None, [], 0
    for stop in (6, 7, 8, 10):  # a chunk, then single tokens, then a chunk of two
        out = _run(ours, ids[:, start:stop], mask[:, :stop], position_ids=positions[:, start:stop],
                   past_key_values=cache, use_cache=True)
        cache, start = out.past_key_values, stop
        pieces.append(out.logits)
    assert cache.get_seq_length() == ids.shape[1]
    assert max_diff(torch.cat(pieces, 1)[real], full[real]) <= 1e-4


GENERATE = dict(max_new_tokens=7, pad_token_id=0)


GREEDY, BEAM = dict(do_sample=False), dict(num_beams=3, num_return_sequences=2)


@pytest.mark.parametrize("case,search", [(c, GREEDY) for c in sorted(TINY)] + [
    (c, BEAM) for c in ARCHITECTURES + ["qwen2-window", "llama3"]])
def test_generate_matches_oracle(case, search, checkpoints):
    theirs, folder = checkpoints(case)
    ours = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    if case in ("openai-gpt", "ctrl"):  # their oracles drop the mask / position ids in generate: no padding there
        ids, mask = random_inputs(VOCAB, batch=2, length=5, special=(2,))
        mask = torch.ones_like(mask)
    else:
        ids, mask = _left_padded(batch=3, length=6, seed=3)
    expected = theirs.generate(ids, attention_mask=mask, **GENERATE, **search)
    got = ours.generate(ids, attention_mask=mask, **GENERATE, **search)
    assert torch.equal(expected, got), f"{case}: {expected.tolist()} != {got.tolist()}"


def test_generation_config_from_checkpoint(checkpoints, tmp_path):
    _, folder = checkpoints("llama")
    ours = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    assert ours.generation_config.eos_token_id == 2 and ours.generation_config.bos_token_id == 1
    with open(f"{folder}/generation_config.json") as f:
        assert json.load(f)["eos_token_id"] == 2  # save_pretrained wrote it: that file, not config.json, was read
    theirs = _oracle("llama")
    theirs.generation_config.max_new_tokens, theirs.generation_config.eos_token_id = 4, [2, 5]
    theirs.save_pretrained(tmp_path)
    ours = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert ours.generation_config.max_new_tokens == 4 and ours.generation_config.eos_token_id == [2, 5]
    ids = torch.tensor([[3, 4, 5]])
    assert torch.equal(ours.generate(ids, pad_token_id=0), theirs.generate(ids, pad_token_id=0))


@pytest.mark.parametrize("case", ["gpt2", "llama"])
def test_auto_classes(case, checkpoints):
    theirs, folder = checkpoints(case, "seq")
    prefix = TINY[case][0]
    assert type(leanformers.AutoModelForSequenceClassification.from_pretrained(folder)).__name__ == \
        prefix + "ForSequenceClassification"
    base = leanformers.AutoModel.from_pretrained(folder)  # a head checkpoint into the base model
    assert type(base).__name__ == prefix + "Model"
    ids, mask = random_inputs(VOCAB, special=(2,))
    assert_close(_run(theirs.base_model, ids, mask), _run(base, ids, mask), keys=["last_hidden_state"])
    lm = leanformers.AutoModelForCausalLM.from_pretrained(folder)  # no LM weights there: drawn, and said so
    assert any(k.startswith("head.") for k in lm.loading_info["missing_keys"]) or case == "gpt2"


def test_decode_step_takes_the_fast_path(checkpoints):
    """With nothing padded, a decode step builds no mask (SDPA's unmasked kernel) and the cache grows in place."""
    _, folder = checkpoints("llama")
    ours = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    ids = torch.tensor([[5, 6, 7, 8]])
    out = _run(ours, ids, torch.ones_like(ids), logits_to_keep=1)
    assert out.logits.shape == (1, 1, VOCAB)
    keys_before = out.past_key_values._keys[0]
    step = _run(ours, ids[:, -1:], torch.ones(1, 5, dtype=torch.long), past_key_values=out.past_key_values)
    assert step.past_key_values._keys[0] is keys_before and step.past_key_values.get_seq_length() == 5


# ------------------------------------------------------------------ bad input
def test_errors_are_clear(checkpoints):
    _, folder = checkpoints("gpt2")
    lm = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(ValueError, match="context window"):
        lm.generate(torch.full((1, 70), 5), max_new_tokens=2)
    with pytest.raises(ValueError, match="past the model's position table"):
        lm.generate(torch.full((1, 60), 5), max_new_tokens=10, pad_token_id=0)
    with pytest.raises(TypeError, match="cannot generate"):
        leanformers.AutoModel.from_pretrained(folder).generate(torch.tensor([[5, 6]]))
    config = _oracle("llama").config.to_dict()
    config["rope_scaling"] = {"rope_type": "ntk-by-parts", "factor": 2.0}
    with pytest.raises(NotImplementedError, match="ntk-by-parts"):
        leanformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("case", ["gpt2", "llama"])
def test_hidden_states_and_inputs_embeds(case, checkpoints):
    theirs, folder = checkpoints(case)
    ours = _ours(case, folder)
    ids, mask = random_inputs(VOCAB, special=(2,))
    expected = _run(theirs, ids, mask, output_hidden_states=True).hidden_states
    got = _run(ours, ids, mask, output_hidden_states=True).hidden_states
    assert len(got) == len(expected) == theirs.config.num_hidden_layers + 1
    real = mask.bool()
    for a, b in zip(expected, got):
        assert max_diff(a[real], b[real]) <= 1e-4
    embeds = ours.get_input_embeddings()(ids)
    assert max_diff(_run(ours, None, mask, inputs_embeds=embeds).logits[real],
                    _run(theirs, None, mask, inputs_embeds=embeds).logits[real]) <= 1e-4
