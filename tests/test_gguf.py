"""GGUF loading against transformers 4.57.6 (the oracle): the real SmolLM2 Q4_1 file and tiny files written here."""
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from leanformers.gguf import gguf_config, hf_tensor_name, load_gguf, unpermute_rows  # noqa: E402

MODELS = Path(__file__).parents[1] / ".models"
SMOLLM2 = MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
needs_smollm2 = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run scripts/fetch_models.sh for the SmolLM2 GGUF")

TEXTS = [
    "Hello world",
    "What is the capital of France?",
    "  leading spaces, trailing tabs\t\t and\nnew\n\nlines  ",
    "numbers 12345 67.89 and 1,000,000",
    "Unicode: café, naïve, Straße, 日本語のテキスト, emoji 🤗🚀, Ελληνικά",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "code: def f(x):\n    return x ** 2  # square",
    "special-ish <repo_name> <file_sep> <|endoftext|> text",
    "don't they'll I'm we've",
]
CONFIG_FIELDS = ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "rope_theta",
                 "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id",
                 "pad_token_id", "unk_token_id", "hidden_act", "rope_scaling"]


def oracle_config_and_tensors(path: Path):
    """What AutoModelForCausalLM.from_pretrained(folder, gguf_file=...) loads, minus its `accelerate` requirement:
    the same config and transformers' own GGUF tensor loader."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_config(config)
    return config, load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]


def oracle_tokenizer(path: Path):
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def assert_state_dict_equal(ours: dict, oracle: dict):
    assert set(ours) == set(oracle)
    for name, tensor in ours.items():
        assert tensor.dtype == torch.float32, name
        assert tensor.shape == oracle[name].shape, name
        assert torch.equal(tensor, oracle[name].float()), name


def assert_config_equal(ours: dict, oracle_config):
    for key in CONFIG_FIELDS:
        assert ours[key] == getattr(oracle_config, key), key
    if "head_dim" in ours:
        assert ours["head_dim"] == oracle_config.head_dim


def assert_tokenizer_equal(ours, oracle, texts):
    """Raw ids, offsets and decoding equal the oracle's (its own BOS handling aside: see test_real_bos_eos)."""
    for text in texts:
        expected = oracle(text, add_special_tokens=False, return_offsets_mapping=True)
        encoding = ours.encode(text, add_special_tokens=False)
        assert encoding.ids == expected["input_ids"], text
        assert encoding.offsets == [tuple(o) for o in expected["offset_mapping"]], text
        for skip in (False, True):
            assert ours.decode(encoding.ids, skip_special_tokens=skip) == oracle.decode(
                encoding.ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False), text


# ------------------------------------------------------------------ the real SmolLM2-135M-Instruct Q4_1
@pytest.fixture(scope="module")
def smollm2():
    return load_gguf(SMOLLM2)


@pytest.fixture(scope="module")
def smollm2_oracle_tokenizer():
    return oracle_tokenizer(SMOLLM2)


@needs_smollm2
def test_real_state_dict_and_config_equal_oracle(smollm2):
    config, tensors = oracle_config_and_tensors(SMOLLM2)
    assert_config_equal(smollm2.config, config)
    assert smollm2.config["tie_word_embeddings"] is True and "lm_head.weight" not in smollm2.state_dict
    assert len(smollm2.state_dict) == 272
    assert_state_dict_equal(smollm2.state_dict, tensors)


@needs_smollm2
def test_real_tokenizer_equals_oracle(smollm2, smollm2_oracle_tokenizer):
    assert smollm2.tokenizer_object.get_vocab_size() == 49152
    assert_tokenizer_equal(smollm2.tokenizer_object, smollm2_oracle_tokenizer, TEXTS)
    assert smollm2.tokenizer_config["chat_template"] == smollm2_oracle_tokenizer.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = smollm2_oracle_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\n")
    expected = smollm2_oracle_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert smollm2.tokenizer_object.encode(prompt).ids == expected


@needs_smollm2
def test_real_bos_eos(smollm2, smollm2_oracle_tokenizer):
    """We follow the file: no BOS (tokenizer.ggml.add_bos_token = false), EOS = token 2. The oracle departs from the
    file in two places, pinned here so a change in it shows: LlamaTokenizerFast's own add_bos_token=True default
    wins, and GGUFLlamaConverter reads tokens[bos_token_id] for the EOS too."""
    config = smollm2.tokenizer_config
    assert (config["bos_token"], config["eos_token"], config["unk_token"], config["pad_token"]) == (
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>")
    assert config["add_bos_token"] is False and config["add_eos_token"] is False
    assert config["model_max_length"] == 8192
    assert smollm2.tokenizer_object.encode("Hello world").ids == [19556, 905]
    assert smollm2_oracle_tokenizer("Hello world").input_ids == [1, 19556, 905]
    assert smollm2_oracle_tokenizer.eos_token == "<|im_start|>"


@needs_smollm2
def test_real_tokenizer_through_leanformers_tokenizer(smollm2, smollm2_oracle_tokenizer):
    tokenization = pytest.importorskip("leanformers.tokenization")
    if not hasattr(tokenization, "Tokenizer"):
        pytest.skip("leanformers.tokenization.Tokenizer is not written yet")
    tokenizer = tokenization.Tokenizer(smollm2.tokenizer_object, **smollm2.tokenizer_config)
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids == smollm2_oracle_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == smollm2_oracle_tokenizer.decode(
            ids, skip_special_tokens=True)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 2)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    for tokenize in (False, True):
        assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=tokenize) == \
            smollm2_oracle_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=tokenize)


@needs_smollm2
def test_real_greedy_answer_with_our_weights(smollm2, smollm2_oracle_tokenizer):
    """transformers' Llama built from our config and loaded with our state dict answers the chat question."""
    config = transformers.LlamaConfig(**smollm2.config)
    model = transformers.LlamaForCausalLM(config).eval()
    missing, unexpected = model.load_state_dict(smollm2.state_dict, strict=False)
    assert missing == ["lm_head.weight"] and unexpected == []
    model.tie_weights()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = smollm2_oracle_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    input_ids = torch.tensor([smollm2.tokenizer_object.encode(prompt).ids])
    with torch.no_grad():
        output = model.generate(input_ids, max_new_tokens=12, do_sample=False, eos_token_id=config.eos_token_id)
    reply = output[0, input_ids.shape[1]:].tolist()
    assert smollm2.tokenizer_object.decode(reply, skip_special_tokens=True) == "The capital of France is Paris."
    assert reply[-1] == config.eos_token_id


# ------------------------------------------------------------------ tiny files written with gguf.GGUFWriter
def byte_level_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    others = [b for b in range(256) if b not in printable]
    stand_ins = dict(zip(printable, map(chr, printable))) | {b: chr(256 + i) for i, b in enumerate(others)}
    return [stand_ins[b] for b in range(256)]


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "l l", "ll o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "h i"]
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def tiny_vocab() -> list[str]:
    return SPECIALS + byte_level_alphabet() + ["".join(merge.split(" ")) for merge in MERGES]


SPM_PIECES = ["▁", "e", "h", "l", "o", "w", "r", "d", "t", "i", "▁t", "he", "▁the", "ll", "▁w", "or", "▁wor", "ld",
              "▁world", "▁h", "▁hi", "▁he", "llo", "▁hello", "▁▁"]


def tiny_sentencepiece_vocab() -> list[str]:
    """Llama 2's layout: <unk>, <s>, </s>, the 256 byte tokens, then pieces (best score first)."""
    return ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES


def write_tokenizer(writer, kind: str) -> None:
    """The tokenizer metadata llama.cpp's converter writes for a byte-level ("gpt2") or SentencePiece ("llama")
    vocabulary."""
    writer.add_tokenizer_model(kind)
    if kind == "gpt2":
        vocab = tiny_vocab()
        # convert_hf_to_gguf writes this for byte-level vocabularies; without it the oracle's decoder strips a space
        writer.add_add_space_prefix(False)
        writer.add_token_list(vocab)
        writer.add_token_types([3] * len(SPECIALS) + [1] * (len(vocab) - len(SPECIALS)))
        writer.add_token_merges(MERGES)
    else:  # SentencePiece files carry scores, no merges; token types: 2 unknown, 3 control, 6 byte, 1 normal
        vocab = tiny_sentencepiece_vocab()
        writer.add_token_list(vocab)
        writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES))
        writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(len(SPM_PIECES))])
    writer.add_vocab_size(len(vocab))


def llama_cpp_permute(weights: np.ndarray, num_heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: rotate-half rows -> interleaved pairs."""
    return weights.reshape(num_heads, 2, weights.shape[0] // num_heads // 2, *weights.shape[1:]) \
        .swapaxes(1, 2).reshape(weights.shape)


TINY = {"hidden": 64, "heads": 4, "kv_heads": 2, "layers": 2, "intermediate": 96}


def tiny_hf_weights(architecture: str, tied: bool, vocab: int = len(tiny_vocab())) -> dict[str, np.ndarray]:
    """A random float32 state dict under Hugging Face names."""
    rng = np.random.default_rng(0)
    hidden, head_dim = TINY["hidden"], TINY["hidden"] // TINY["heads"]
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not tied:
        shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(TINY["layers"]):
        layer = f"model.layers.{i}."
        shapes |= {layer + "input_layernorm.weight": (hidden,), layer + "post_attention_layernorm.weight": (hidden,),
                   layer + "self_attn.q_proj.weight": (hidden, hidden),
                   layer + "self_attn.k_proj.weight": (TINY["kv_heads"] * head_dim, hidden),
                   layer + "self_attn.v_proj.weight": (TINY["kv_heads"] * head_dim, hidden),
                   layer + "self_attn.o_proj.weight": (hidden, hidden),
                   layer + "mlp.gate_proj.weight": (TINY["intermediate"], hidden),
                   layer + "mlp.up_proj.weight": (TINY["intermediate"], hidden),
                   layer + "mlp.down_proj.weight": (hidden, TINY["intermediate"])}
        if architecture == "qwen2":
            shapes |= {layer + f"self_attn.{p}_proj.bias": (shapes[layer + f"self_attn.{p}_proj.weight"][0],)
                       for p in "qkv"}
    return {name: rng.standard_normal(shape).astype(np.float32) * 0.2 for name, shape in shapes.items()}


GGUF_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output",
              "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
# stored types: a mix of F32, F16, BF16 and block quantizations (norms and biases stay F32, as llama.cpp keeps them)
STORED = {"token_embd": "Q8_0", "attn_q": "F16", "attn_k": "Q4_0", "attn_v": "BF16", "attn_output": "Q8_0",
          "ffn_gate": "Q4_1", "ffn_up": "Q5_1", "ffn_down": "F32", "output": "F16"}


def gguf_name_and_kind(hf_name: str) -> tuple[str, str]:
    """'model.layers.0.self_attn.q_proj.weight' -> ('blk.0.attn_q.weight', stored type)."""
    stem, suffix = hf_name.rsplit(".", 1)
    if stem.startswith("model.layers."):
        _, _, layer, part = stem.split(".", 3)
        short = GGUF_NAMES[part]
        name = f"blk.{layer}.{short}.{suffix}"
    else:
        short = GGUF_NAMES[stem]
        name = f"{short}.{suffix}"
    return name, STORED.get(short, "F32") if suffix == "weight" else "F32"


def gguf_tensor(hf_name: str, weights: np.ndarray, architecture: str):
    """HF name + float32 weights -> (GGUF name, stored array, raw_dtype) the way convert_hf_to_gguf writes it."""
    name, kind = gguf_name_and_kind(hf_name)
    if architecture == "llama" and ".attn_q." in name:
        weights = llama_cpp_permute(weights, TINY["heads"])
    elif architecture == "llama" and ".attn_k." in name:
        weights = llama_cpp_permute(weights, TINY["kv_heads"])
    if kind == "F32":
        return name, weights, None
    if kind == "F16":
        return name, weights.astype(np.float16), None
    qtype = gguf.GGMLQuantizationType[kind]
    return name, gguf.quants.quantize(weights, qtype), qtype


def stored_values(hf_name: str, weights: np.ndarray) -> np.ndarray:
    """What the file holds for these weights, back in float32. Blocks run along rows, so quantizing before or
    after llama.cpp's row permutation gives the same numbers."""
    kind = gguf_name_and_kind(hf_name)[1]
    if kind in ("F32", "F16"):
        return weights.astype({"F32": np.float32, "F16": np.float16}[kind]).astype(np.float32)
    qtype = gguf.GGMLQuantizationType[kind]
    return gguf.quants.dequantize(gguf.quants.quantize(weights, qtype), qtype)


def write_tiny_gguf(path: Path, architecture: str, weights: dict, *, tokenizer: str = "gpt2",
                    add_bos: bool | None = None, name: str = "tiny test model") -> Path:
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_block_count(TINY["layers"])
    writer.add_context_length(128)
    writer.add_embedding_length(TINY["hidden"])
    writer.add_feed_forward_length(TINY["intermediate"])
    writer.add_head_count(TINY["heads"])
    writer.add_head_count_kv(TINY["kv_heads"])
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    if architecture == "llama":
        writer.add_rope_dimension_count(TINY["hidden"] // TINY["heads"])
    write_tokenizer(writer, tokenizer)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    writer.add_chat_template(CHAT_TEMPLATE)
    for hf_name, array in weights.items():
        gguf_name, stored, raw_dtype = gguf_tensor(hf_name, array, architecture)
        writer.add_tensor(gguf_name, stored, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("architecture,tied", [("llama", False), ("llama", True), ("qwen2", True)])
def test_tiny_gguf_round_trips_and_equals_oracle(tmp_path, architecture, tied):
    weights = tiny_hf_weights(architecture, tied)
    path = write_tiny_gguf(tmp_path / "tiny.gguf", architecture, weights)
    checkpoint = load_gguf(path)

    # round trip: exactly the written values, in Hugging Face layout (the Q/K permutation undone)
    assert set(checkpoint.state_dict) == set(weights)
    for name, original in weights.items():
        assert np.array_equal(checkpoint.state_dict[name].numpy(), stored_values(name, original)), name
        assert np.abs(checkpoint.state_dict[name].numpy() - original).max() < 0.2, name  # 4-bit rounding at most

    config = checkpoint.config
    assert config["model_type"] == architecture and config["tie_word_embeddings"] is tied
    assert config["vocab_size"] == len(tiny_vocab())
    oracle_config, tensors = oracle_config_and_tensors(path)
    assert_config_equal(config, oracle_config)
    assert_state_dict_equal(checkpoint.state_dict, tensors)
    tokenizer = oracle_tokenizer(path)
    texts = ["hello the world", " the world hi", "<|im_start|>user\nhello<|im_end|>", "café 🤗 x\ny"]
    assert_tokenizer_equal(checkpoint.tokenizer_object, tokenizer, texts)
    assert checkpoint.tokenizer_config["chat_template"] == CHAT_TEMPLATE == tokenizer.chat_template


def test_tiny_sentencepiece_tokenizer_equals_oracle(tmp_path):
    """Llama 2 style files: SentencePiece BPE with byte fallback, merges rebuilt from scores, BOS by default."""
    weights = tiny_hf_weights("llama", tied=True, vocab=len(tiny_sentencepiece_vocab()))
    path = write_tiny_gguf(tmp_path / "spm.gguf", "llama", weights, tokenizer="llama")
    checkpoint = load_gguf(path, with_tensors=False)
    oracle = oracle_tokenizer(path)
    texts = ["hello the world", "  hi  there", "the wor ld\nhello", "café 🤗 x", "</s>hello<s> world"]
    assert_tokenizer_equal(checkpoint.tokenizer_object, oracle, texts)
    for text in texts:  # here the oracle honours the BOS default too
        assert checkpoint.tokenizer_object.encode(text).ids == oracle(text).input_ids
    assert checkpoint.tokenizer_object.encode("hello").tokens == ["<s>", "▁hello"]
    assert checkpoint.tokenizer_object.encode("é").tokens == ["<s>", "▁", "<0xC3>", "<0xA9>"]
    config = checkpoint.tokenizer_config
    assert (config["bos_token"], config["eos_token"], config["unk_token"]) == ("<s>", "</s>", "<unk>")
    assert config["add_bos_token"] is True and config["clean_up_tokenization_spaces"] is False


def test_tiny_gguf_bos_follows_the_file(tmp_path):
    weights = tiny_hf_weights("llama", tied=True)
    with_bos = load_gguf(write_tiny_gguf(tmp_path / "bos.gguf", "llama", weights, add_bos=True))
    ids = with_bos.tokenizer_object.encode("hello").ids
    assert with_bos.tokenizer_config["add_bos_token"] is True and ids[0] == 1
    assert ids[1:] == load_gguf(write_tiny_gguf(tmp_path / "plain.gguf", "llama", weights)).tokenizer_object \
        .encode("hello").ids
    pair = with_bos.tokenizer_object.encode("hello", "world")
    assert pair.ids.count(1) == 2 and pair.type_ids[-1] == 1


def test_folder_plus_file_name_and_config_only(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", tiny_hf_weights("llama", tied=True))
    checkpoint = load_gguf(tmp_path, "tiny.gguf", with_tensors=False)
    assert checkpoint.state_dict == {} and checkpoint.config["num_hidden_layers"] == TINY["layers"]
    assert checkpoint.tokenizer_object.encode("hello").ids
    assert gguf_config(tmp_path, "tiny.gguf") == checkpoint.config == gguf_config(path)
    assert load_gguf(tmp_path, str(path)).state_dict.keys() == load_gguf(path).state_dict.keys()
    with pytest.raises(FileNotFoundError, match="other.gguf"):
        load_gguf(tmp_path, "other.gguf")


def test_unpermute_inverts_llama_cpp_permute():
    weights = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    assert np.array_equal(unpermute_rows(llama_cpp_permute(weights, 8), 8), weights)
    bias = np.arange(32, dtype=np.float32)
    assert np.array_equal(unpermute_rows(llama_cpp_permute(bias, 2), 2), bias)


# ------------------------------------------------------------------ bad input
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        load_gguf(tmp_path / "nope.gguf")


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"{\"not\": \"gguf\"}" * 10)
    with pytest.raises(ValueError, match="model.safetensors is not a GGUF file"):
        load_gguf(path)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 30)
    with pytest.raises(ValueError, match="truncated.gguf is a damaged GGUF file"):
        load_gguf(truncated)


def test_unsupported_architecture(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "bert.gguf"), "bert")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"bert.gguf: GGUF architecture 'bert' is not supported"):
        load_gguf(tmp_path / "bert.gguf")


def test_unknown_tensor_name():
    with pytest.raises(ValueError, match="rope_freqs.weight"):
        hf_tensor_name("rope_freqs.weight", "x.gguf")
    assert hf_tensor_name("blk.12.ffn_down.weight") == "model.layers.12.mlp.down_proj.weight"
    assert hf_tensor_name("blk.0.attn_q.bias") == "model.layers.0.self_attn.q_proj.bias"


def test_tokenizer_without_token_types_marks_named_roles_special():
    from leanformers.gguf import tokenizer_from_metadata

    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tiny_vocab(),
                "tokenizer.ggml.merges": MERGES}
    config = {"model_type": "llama", "bos_token_id": 1, "eos_token_id": 2, "unk_token_id": None, "pad_token_id": None}
    tokenizer, tokenizer_config = tokenizer_from_metadata(metadata, config)
    tokens = tokenizer.encode("<|im_start|>hello<|im_end|><|endoftext|>").tokens
    assert tokens[0] == "<|im_start|>" and "<|im_end|>" in tokens
    assert "<|endoftext|>" not in tokens  # no role names it
    assert tokenizer_config["add_bos_token"] is False and tokenizer_config["unk_token"] is None
    with pytest.raises(ValueError, match="eos token id 999 is outside the vocabulary"):
        tokenizer_from_metadata(metadata, {**config, "eos_token_id": 999})
    with pytest.raises(NotImplementedError, match="tokenizer model 'bert'"):
        tokenizer_from_metadata({**metadata, "tokenizer.ggml.model": "bert"}, config)


def test_our_header_parser_reads_what_gguf_py_reads(tmp_path):
    """GGUFFile (our parser: 0.8 s and ~15 MB for SmolLM2's header where gguf-py's reader takes 6 s and ~160 MB)
    gives gguf-py's field contents and tensor views on a file with every stored type, and names the damage in a
    file cut short inside its tensor data."""
    import gguf

    from leanformers.gguf import GGUFFile

    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", tiny_hf_weights("llama", False))
    ours, theirs = GGUFFile(str(path)), gguf.GGUFReader(path)
    expected = {name: field.contents() for name, field in theirs.fields.items()}
    assert ours.fields == expected and all(type(ours.fields[k]) is type(v) for k, v in expected.items())
    assert len(ours.tensors) == len(theirs.tensors) == 2 + 9 * 2 + 1
    for mine, reference in zip(ours.tensors, theirs.tensors):
        assert (mine.name, mine.tensor_type, list(mine.shape)) == (reference.name, reference.tensor_type,
                                                                  reference.shape.tolist())
        assert mine.data.dtype == reference.data.dtype and np.array_equal(mine.data, reference.data)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.gguf is a damaged GGUF file: .*past the end of the file"):
        load_gguf(cut)
