"""GGUF checkpoints (llama.cpp's single-file format) -> what the rest of leanformers consumes.

`load_gguf(path)` gives a config.json-style dict, a float32 state dict under Hugging Face names, a `tokenizers`
object and a tokenizer_config.json-style dict. The `gguf` package (llama.cpp's own gguf-py) parses the file and
dequantizes the tensors; this module only renames and reshapes. It mirrors transformers' GGUF loader
(integrations/ggml.py, modeling_gguf_pytorch_utils.py): the same config values, tensors and token ids. Where that
loader contradicts the file, we follow the file (as llama.cpp does):
- BOS/EOS are added only as `tokenizer.ggml.add_bos_token` / `add_eos_token` say (transformers' LlamaTokenizerFast
  always adds BOS) and eos_token is tokens[eos_token_id] (transformers takes tokens[bos_token_id]);
- pad_token comes from `tokenizer.ggml.padding_token_id` and model_max_length from the context length;
- byte-level vocabularies never strip a leading space when decoding (transformers does if `add_space_prefix` is
  missing), and every control token is special (transformers hard-codes three for Qwen2).

No torch at import time: the tokenizer side (`with_tensors=False`) must not pull it in.
"""
from __future__ import annotations

import functools
import mmap
import os
import re
import struct
from dataclasses import dataclass, field

from . import hub

# GGUF metadata key (after "<arch>.") -> config.json key, shared by the Llama-like architectures we load
_CONFIG_KEYS = {
    "context_length": "max_position_embeddings",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "embedding_length": "hidden_size",
    "rope.freq_base": "rope_theta",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "vocab_size": "vocab_size",
}
_TOKEN_ID_KEYS = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
                  "unknown_token_id": "unk_token_id", "padding_token_id": "pad_token_id"}

# per GGUF architecture: model_type, config.json defaults (those of transformers' config class), and whether
# llama.cpp's converter permuted the Q/K rows (it does so for "llama" only)
_ARCHITECTURES = {
    "llama": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "permute_qk": True,
              "tokenizer_class": "LlamaTokenizerFast",
              "defaults": {"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "attention_bias": False,
                           "mlp_bias": False, "pretraining_tp": 1}},
    "qwen2": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "permute_qk": False,
              "tokenizer_class": "Qwen2TokenizerFast",
              "defaults": {"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "use_sliding_window": False,
                           "sliding_window": 4096, "max_window_layers": 28}},
    "qwen3": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "permute_qk": False,
              "tokenizer_class": "Qwen2TokenizerFast",
              "defaults": {"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "attention_bias": False, "head_dim": 128,
                           "use_sliding_window": False, "sliding_window": None, "max_window_layers": 28}},
    "phi3": {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "permute_qk": False,
             "tokenizer_class": "LlamaTokenizerFast",
             "defaults": {"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "partial_rotary_factor": 1.0,
                          "sliding_window": None}},
    # Gemma 2: llama.cpp stores the norms as 1 + w (see _NORM_OFFSET); soft-capping values are read when present
    "gemma2": {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "permute_qk": False,
               "tokenizer_class": "GemmaTokenizerFast", "hidden_act": "gelu_pytorch_tanh",
               "defaults": {"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "attention_bias": False,
                            "query_pre_attn_scalar": 256, "final_logit_softcapping": 30.0,
                            "attn_logit_softcapping": 50.0, "sliding_window": 4096, "head_dim": 256}},
}
# GGUF metadata that only some architectures carry (after "<arch>.") -> config.json key; the file wins over defaults
_ARCH_CONFIG_KEYS = {
    "qwen3": {"attention.key_length": "head_dim"},
    "phi3": {"attention.sliding_window": "sliding_window"},
    "gemma2": {"attention.key_length": "head_dim", "attention.sliding_window": "sliding_window",
               "attn_logit_softcapping": "attn_logit_softcapping",
               "final_logit_softcapping": "final_logit_softcapping"},
}
# architectures whose llama.cpp files store RMSNorm weights as 1 + w (Hugging Face keeps w)
_NORM_OFFSET = {"gemma2"}

# GGUF tensor name (without .weight/.bias) -> Hugging Face name; "{}" is the layer index
_TENSOR_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "blk.{}.attn_norm": "model.layers.{}.input_layernorm",
    "blk.{}.attn_q": "model.layers.{}.self_attn.q_proj",
    "blk.{}.attn_k": "model.layers.{}.self_attn.k_proj",
    "blk.{}.attn_v": "model.layers.{}.self_attn.v_proj",
    "blk.{}.attn_output": "model.layers.{}.self_attn.o_proj",
    "blk.{}.ffn_norm": "model.layers.{}.post_attention_layernorm",
    "blk.{}.ffn_gate": "model.layers.{}.mlp.gate_proj",
    "blk.{}.ffn_up": "model.layers.{}.mlp.up_proj",
    "blk.{}.ffn_down": "model.layers.{}.mlp.down_proj",
}
# per-architecture names that differ from (or add to) the Llama ones above (gguf-py's tensor name map)
_ARCH_TENSOR_NAMES = {
    "qwen3": {"blk.{}.attn_q_norm": "model.layers.{}.self_attn.q_norm",
              "blk.{}.attn_k_norm": "model.layers.{}.self_attn.k_norm"},
    "phi3": {"blk.{}.attn_qkv": "model.layers.{}.self_attn.qkv_proj",
             "blk.{}.ffn_up": "model.layers.{}.mlp.gate_up_proj"},
    "gemma2": {"blk.{}.post_attention_norm": "model.layers.{}.post_attention_layernorm",
               "blk.{}.ffn_norm": "model.layers.{}.pre_feedforward_layernorm",
               "blk.{}.post_ffw_norm": "model.layers.{}.post_feedforward_layernorm"},
}
_LAYER_NAME = re.compile(r"blk\.(\d+)\.(.+)")

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
_CONTROL_TOKEN = 3

# Qwen2's pre-tokenizer split (transformers' Qwen2Converter); llama's byte-level vocabularies use GPT-2's regex
_QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")


@dataclass
class GGUFCheckpoint:
    config: dict
    state_dict: dict = field(default_factory=dict)  # name -> float32 torch.Tensor; empty when with_tensors=False
    tokenizer_object: object = None  # tokenizers.Tokenizer
    tokenizer_config: dict = field(default_factory=dict)
    # keep_quantized=True: name -> GGUFWeight for the block-quantized tensors (state_dict then holds the others)
    quantized: dict = field(default_factory=dict)


def load_gguf(name_or_path, gguf_file=None, *, with_tensors: bool = True, subfolder: str = "",
              keep_quantized: bool = False, **where) -> GGUFCheckpoint:
    """Read a GGUF file: `load_gguf("x.gguf")` or, as from_pretrained takes it, `load_gguf(folder_or_repo, "x.gguf")`.
    `with_tensors=False` skips dequantizing (and torch) when only the config and tokenizer are needed;
    `keep_quantized=True` leaves the block-quantized tensors as GGUFWeight (see modeling/quant.py).
    `where`: revision / cache_dir / token / local_files_only, as for hub.resolve."""
    path = resolve_gguf(name_or_path, gguf_file, subfolder=subfolder, **where)
    reader = _open(path)
    metadata = _metadata(reader)
    config = config_from_metadata(metadata, [tensor.name for tensor in reader.tensors], path)
    tokenizer_object, tokenizer_config = tokenizer_from_metadata(metadata, config, path)
    if keep_quantized and with_tensors:
        state_dict, quantized = gguf_quantized_state_dict(reader, config, path)
        return GGUFCheckpoint(config, state_dict, tokenizer_object, tokenizer_config, quantized)
    state_dict = gguf_state_dict(reader, config, path) if with_tensors else {}
    return GGUFCheckpoint(config, state_dict, tokenizer_object, tokenizer_config)


def gguf_config(name_or_path, gguf_file=None, *, subfolder: str = "", **where) -> dict:
    """Only the config.json-style dict of a GGUF file (no tensors, no tokenizer)."""
    path = resolve_gguf(name_or_path, gguf_file, subfolder=subfolder, **where)
    reader = _open(path)
    return config_from_metadata(_metadata(reader), [tensor.name for tensor in reader.tensors], path)


def resolve_gguf(name_or_path, gguf_file=None, *, subfolder: str = "", **where) -> str:
    """Local path of the GGUF file: `name_or_path` itself when `gguf_file` is None, `gguf_file` when it is a path
    of its own, else `gguf_file` inside the folder or Hub repo `name_or_path`."""
    if gguf_file is None:
        return os.fspath(name_or_path)
    gguf_file = os.fspath(gguf_file)
    if os.path.isabs(gguf_file):
        return gguf_file
    hub.check_inside("gguf_file", gguf_file)
    return hub.resolve(name_or_path, gguf_file, subfolder=subfolder, **where)


def _metadata(reader) -> dict:
    return dict(reader.fields)


def _open(path: str):
    """A GGUFReader for `path`. Parsing the metadata takes seconds for a large vocabulary, and from_pretrained asks
    for the config before the weights, so the last readers are kept while the file is unchanged."""
    try:
        import gguf  # noqa: F401
    except ImportError as error:
        raise ImportError("reading GGUF files needs the `gguf` package: pip install gguf") from error
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file: it starts with {magic!r}, not b'GGUF'")
    stat = os.stat(path)
    return _reader(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


def release_readers():
    """Drop the cached readers: gguf-py's parse of a 49k-token vocabulary holds ~160 MB of Python objects plus the
    mapped file pages it touched (measured on SmolLM2: RSS 672 -> 434 MB). A model kept quantized calls this
    once its weights are in place; a later tokenizer load parses the file again."""
    _reader.cache_clear()


@functools.lru_cache(maxsize=2)
def _reader(path: str, mtime_ns: int, size: int):
    try:
        return GGUFFile(path)
    except Exception as error:  # truncated or corrupt files fail in assorted numpy/struct/unicode ways
        raise ValueError(f"{path} is a damaged GGUF file: {type(error).__name__}: {error}") from error


@dataclass
class GGUFTensor:
    """One entry of a GGUF tensor table: `shape` innermost dimension first (as the file lists it); `data` a read-only
    numpy view of the mapped file, shaped as gguf-py's reader shapes it (float types: the dimensions reversed;
    block-quantized types: uint8 rows of bytes)."""
    name: str
    tensor_type: object  # gguf.GGMLQuantizationType
    shape: list
    data: object


class GGUFFile:
    """A GGUF file's metadata (`fields`: key -> Python value, as gguf-py's `ReaderField.contents()` gives) and tensor
    table (`tensors`), parsed straight from the mapped bytes. gguf-py's GGUFReader keeps a numpy view per vocabulary
    entry: ~6 s and ~160 MB resident for SmolLM2's 49k tokens, where this takes a fraction of a second and keeps
    only the Python lists."""

    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                12: "<d"}  # GGUFValueType -> struct format; 8 = string, 9 = array

    def __init__(self, path: str):
        import numpy as np
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import quant_shape_to_byte_shape

        self.path = path
        self.data = np.memmap(path, mode="r")
        with open(path, "rb") as file:  # the header through Python's mmap: plain bytes slices, fast for 49k strings
            self.header = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        self.offset = 0
        if self._bytes(4) != b"GGUF":
            raise ValueError("no GGUF magic")
        version = self._scalar(4)
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (big-endian or unknown); versions 2 and 3 are supported")
        tensor_count, kv_count = self._scalar(10), self._scalar(10)
        self.fields = {"GGUF.version": version, "GGUF.tensor_count": tensor_count, "GGUF.kv_count": kv_count}
        for _ in range(kv_count):
            key = self._string()
            self.fields[key] = self._value(self._scalar(4))
        table = []
        for _ in range(tensor_count):
            name = self._string()
            dims = [self._scalar(10) for _ in range(self._scalar(4))]
            table.append((name, dims, GGMLQuantizationType(self._scalar(4)), self._scalar(10)))
        alignment = int(self.fields.get("general.alignment", 32))
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"general.alignment {alignment} is not a power of two")
        start = -(-self.offset // alignment) * alignment
        self.header.close()
        self.tensors = []
        for name, dims, kind, offset in table:
            count = int(np.prod(dims))
            float_type = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
                          "I32": np.int32, "I64": np.int64}.get(kind.name)
            shape = tuple(reversed(dims))
            block, size = GGML_QUANT_SIZES[kind]
            if float_type is None:
                dtype, shape, count = np.uint8, quant_shape_to_byte_shape(shape, kind), count * size // block
            else:
                dtype = float_type
            begin = start + offset
            nbytes = count * np.dtype(dtype).itemsize
            if begin + nbytes > len(self.data):
                raise ValueError(f"tensor {name} ends at byte {begin + nbytes}, past the end of the file "
                                 f"({len(self.data)} bytes): truncated")
            array = self.data[begin:begin + nbytes].view(dtype).reshape(shape)
            self.tensors.append(GGUFTensor(name, kind, dims, array))

    def _bytes(self, count: int) -> bytes:
        if self.offset + count > len(self.header):
            raise ValueError(f"the file ends inside its header (byte {self.offset} + {count})")
        chunk = self.header[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def _scalar(self, kind: int):
        form = self._SCALARS[kind]
        return struct.unpack(form, self._bytes(struct.calcsize(form)))[0]

    def _string(self) -> str:
        return self._bytes(self._scalar(10)).decode("utf-8")

    def _value(self, kind: int):
        import numpy as np

        if kind == 8:
            return self._string()
        if kind != 9:
            return self._scalar(kind)
        item, count = self._scalar(4), self._scalar(10)
        if item == 8:
            return [self._string() for _ in range(count)]
        if item == 9:
            return [self._value(9) for _ in range(count)]
        dtype = np.dtype(self._SCALARS[item].replace("?", "u1"))
        values = np.frombuffer(self._bytes(dtype.itemsize * count), dtype).tolist()
        return [bool(v) for v in values] if item == 7 else values


# ---------------------------------------------------------------- config
def config_from_metadata(metadata: dict, tensor_names: list[str], path: str = "<gguf>") -> dict:
    """GGUF metadata -> a config.json-style dict (the fields transformers' GGUF loader sets, plus the defaults
    its config class would add, so that the dict stands on its own)."""
    architecture = metadata.get("general.architecture")
    if architecture not in _ARCHITECTURES:
        raise ValueError(f"{path}: GGUF architecture {architecture!r} is not supported "
                         f"(supported: {', '.join(_ARCHITECTURES)})")
    spec = _ARCHITECTURES[architecture]
    if metadata.get(f"{architecture}.rope.scaling.type", "none") != "none":
        # transformers ignores these keys and would compute a different model; refuse rather than guess
        raise NotImplementedError(f"{path}: RoPE scaling {metadata[f'{architecture}.rope.scaling.type']!r} "
                                  "in GGUF files is not supported")
    config = {"model_type": spec["model_type"], "architectures": spec["architectures"],
              "hidden_act": spec.get("hidden_act", "silu"), "rope_scaling": None, "torch_dtype": "float32",
              **spec["defaults"]}
    for gguf_key, config_key in {**_CONFIG_KEYS, **_ARCH_CONFIG_KEYS.get(architecture, {})}.items():
        if f"{architecture}.{gguf_key}" in metadata:
            config[config_key] = metadata[f"{architecture}.{gguf_key}"]
    for gguf_key, config_key in _TOKEN_ID_KEYS.items():
        config[config_key] = metadata.get(f"tokenizer.ggml.{gguf_key}")
    missing = [key for key in ("hidden_size", "num_hidden_layers", "num_attention_heads") if key not in config]
    if missing:
        raise ValueError(f"{path}: GGUF metadata lacks {', '.join(f'{architecture}.<{k}>' for k in missing)}")
    config.setdefault("num_key_value_heads", config["num_attention_heads"])
    config.setdefault("vocab_size", len(metadata.get("tokenizer.ggml.tokens", ())) or None)
    if architecture == "llama":  # all of a Llama head rotates, so llama.cpp's rotary dimension is the head size
        config["head_dim"] = metadata.get("llama.rope.dimension_count",
                                          config["hidden_size"] // config["num_attention_heads"])
    config["tie_word_embeddings"] = "output.weight" not in tensor_names
    return config


# ---------------------------------------------------------------- tensors
def gguf_state_dict(reader, config: dict, path: str = "<gguf>") -> dict:
    """Dequantize every tensor to float32 under its Hugging Face name, undoing llama.cpp's Q/K row permutation."""
    import numpy as np
    import torch
    from gguf.quants import dequantize

    architecture = _gguf_architecture(config)
    permute_qk = _ARCHITECTURES[architecture]["permute_qk"]
    state_dict = {}
    for tensor in reader.tensors:
        name = hf_tensor_name(tensor.name, path, architecture)
        try:
            weights = dequantize(tensor.data, tensor.tensor_type)  # numpy shape = GGUF shape reversed = torch's
        except NotImplementedError as error:
            raise NotImplementedError(f"{path}: tensor {tensor.name} uses {tensor.tensor_type.name}, "
                                      "which the gguf package cannot dequantize") from error
        if permute_qk and ".self_attn.q_proj." in name:
            weights = unpermute_rows(weights, config["num_attention_heads"])
        elif permute_qk and ".self_attn.k_proj." in name:
            weights = unpermute_rows(weights, config["num_key_value_heads"])
        if architecture in _NORM_OFFSET and name.endswith("norm.weight"):
            weights = weights - 1  # a new array: no copy needed below
        if not weights.flags.writeable:  # F32 tensors are views of the read-only memory-mapped file
            weights = weights.copy()
        state_dict[name] = torch.from_numpy(weights.astype(np.float32, copy=False))
    return state_dict


_FLOAT_TYPES = ("F32", "F16", "BF16", "F64")
_BLOCK = 32  # elements per block of Q4_0 / Q4_1 / Q8_0 / Q5_*
_BITS = {"Q2_K": 2, "Q3_K": 3, "IQ4_NL": 4, "IQ4_XS": 4, "Q4_K": 4, "Q5_0": 5, "Q5_1": 5, "Q5_K": 5, "Q6_K": 6,
         "Q8_0": 8, "Q8_1": 8, "Q8_K": 8}


@dataclass
class GGUFWeight:
    """One block-quantized GGUF tensor, kept as the file's bytes. `rows` is the (out, in) shape; `heads` the head
    count when llama.cpp permuted the rows (Q/K projections), undone as the rows are read."""
    name: str
    type_name: str
    raw: object  # numpy uint8 (out, bytes per row), a view of the memory-mapped file
    rows: tuple
    heads: int | None = None

    @property
    def bits(self) -> int:
        """Bits per weight of the file's type: 4 or less maps to int4, more to int8."""
        return 4 if self.type_name in ("Q4_0", "Q4_1") else _BITS.get(self.type_name, 8)

    def int4_blocks(self):
        """Q4_0 / Q4_1 exactly: (q int32 (out, in) in 0..15, scale float32 (out, in/32), zero float32 (out, in/32))
        with weight = (q - 8) * scale + zero (Q4_0: d * (q - 8); Q4_1: d * q + m)."""
        import numpy as np
        import torch

        out, k = self.rows
        size = 18 if self.type_name == "Q4_0" else 20
        blocks = np.asarray(self.raw).reshape(out, k // _BLOCK, size)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32) if size == 20 else None
        nibbles = blocks[..., size - 16:]
        q = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1).reshape(out, k)  # byte j: elements j and j + 16
        zero = m + 8 * d if m is not None else np.zeros_like(d)
        q, d, zero = (torch.from_numpy(np.ascontiguousarray(self._unpermute(a))) for a in (q, d, zero))
        return q.to(torch.int32), d, zero

    def ggml_blocks(self):
        """The weight as the block kernels take it (modeling/quant.BlockLinear): (block type, torch uint8 (out,
        bytes per row)). Q4_1 and Q8_0 are the file's own bytes (copied out of the mapping, rows unpermuted); Q4_0
        becomes Q4_1 exactly (m = -8 d, the same codes); other types return None."""
        import numpy as np
        import torch

        if self.type_name not in ("Q4_0", "Q4_1", "Q8_0"):
            return None
        raw = np.asarray(self.raw)
        if self.type_name == "Q4_0":  # d, 16 code bytes -> d, m = -8 d, the same 16 bytes
            out, k = self.rows
            blocks = raw.reshape(out, k // _BLOCK, 18)
            d = blocks[..., 0:2].copy().view(np.float16)
            m = (d.astype(np.float32) * -8).astype(np.float16)
            raw = np.concatenate([blocks[..., 0:2], m.view(np.uint8), blocks[..., 2:]], axis=-1).reshape(out, -1)
        block_type = "Q8_0" if self.type_name == "Q8_0" else "Q4_1"
        return block_type, torch.from_numpy(np.ascontiguousarray(self._unpermute(raw)).copy())

    def dequantize_rows(self, start: int, stop: int):
        """float32 numpy rows [start, stop) of the (unpermuted) weight."""
        import numpy as np
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        if self.heads is None:
            rows = dequantize(np.asarray(self.raw[start:stop]), GGMLQuantizationType[self.type_name])
            return rows.astype(np.float32, copy=False).reshape(stop - start, self.rows[1])
        full = dequantize(np.asarray(self.raw), GGMLQuantizationType[self.type_name]).reshape(self.rows)
        return np.ascontiguousarray(self._unpermute(full)[start:stop], dtype=np.float32)

    def _unpermute(self, array):
        return unpermute_rows(array, self.heads) if self.heads else array


def gguf_quantized_state_dict(reader, config: dict, path: str = "<gguf>") -> tuple[dict, dict]:
    """(float tensors as float32 torch tensors, block-quantized tensors as GGUFWeight), under Hugging Face names."""
    import numpy as np
    import torch
    from gguf.quants import dequantize

    permute_qk = _ARCHITECTURES[_gguf_architecture(config)]["permute_qk"]
    floats, quantized = {}, {}
    for tensor in reader.tensors:
        name = hf_tensor_name(tensor.name, path)
        heads = None
        if permute_qk and ".self_attn.q_proj." in name:
            heads = config["num_attention_heads"]
        elif permute_qk and ".self_attn.k_proj." in name:
            heads = config["num_key_value_heads"]
        type_name = tensor.tensor_type.name
        if type_name not in _FLOAT_TYPES and len(tensor.shape) == 2:
            rows = (int(tensor.shape[1]), int(tensor.shape[0]))  # GGUF lists dimensions innermost first
            quantized[name] = GGUFWeight(tensor.name, type_name, tensor.data, rows, heads)
            continue
        weights = dequantize(tensor.data, tensor.tensor_type)
        weights = unpermute_rows(weights, heads) if heads else weights
        floats[name] = torch.from_numpy(np.array(weights, dtype=np.float32))  # a copy: no view into the mapping
    return floats, quantized


def _gguf_architecture(config: dict) -> str:
    return next(arch for arch, spec in _ARCHITECTURES.items() if spec["model_type"] == config["model_type"])


def hf_tensor_name(gguf_name: str, path: str = "<gguf>", architecture: str = "llama") -> str:
    """'blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj.weight' (names of the GGUF `architecture`)."""
    stem, _, suffix = gguf_name.rpartition(".")
    layer = _LAYER_NAME.fullmatch(stem)
    template = f"blk.{{}}.{layer.group(2)}" if layer else stem
    names = {**_TENSOR_NAMES, **_ARCH_TENSOR_NAMES.get(architecture, {})}
    if template not in names or suffix not in ("weight", "bias"):
        raise ValueError(f"{path}: tensor {gguf_name!r} has no Hugging Face counterpart that leanformers knows")
    hf_stem = names[template].format(layer.group(1)) if layer else names[template]
    return f"{hf_stem}.{suffix}"


def unpermute_rows(weights, num_heads: int):
    """Undo llama.cpp's convert_hf_to_gguf `permute`: within each head it interleaves the two rotary halves
    (rows 0, d/2, 1, d/2+1, ...) for its adjacent-pair RoPE; Hugging Face's rotate_half wants them back in halves.
    weights: (num_heads * head_dim, ...) -> same shape."""
    head_dim = weights.shape[0] // num_heads
    pairs = weights.reshape(num_heads, head_dim // 2, 2, *weights.shape[1:])
    return pairs.swapaxes(1, 2).reshape(weights.shape)


# ---------------------------------------------------------------- tokenizer
def tokenizer_from_metadata(metadata: dict, config: dict, path: str = "<gguf>"):
    """GGUF tokenizer metadata -> (tokenizers.Tokenizer, tokenizer_config dict)."""
    from tokenizers import AddedToken

    kind = metadata.get("tokenizer.ggml.model")
    if kind not in _TOKENIZER_BUILDERS:
        raise NotImplementedError(f"{path}: GGUF tokenizer model {kind!r} is not supported "
                                  f"(supported: {', '.join(map(repr, _TOKENIZER_BUILDERS))})")
    tokens = metadata["tokenizer.ggml.tokens"]
    special_ids = _token_ids(metadata, config, path)
    names = {role: tokens[i] if i is not None else None for role, i in special_ids.items()}
    build, defaults = _TOKENIZER_BUILDERS[kind]
    tokenizer = build(metadata, config["model_type"], names["unk"])
    if "tokenizer.ggml.token_type" in metadata:
        specials = [tokens[i] for i, kind in enumerate(metadata["tokenizer.ggml.token_type"]) if kind == _CONTROL_TOKEN]
    else:  # old files: the named roles are the control tokens
        specials = [names[role] for role in ("unk", "bos", "eos") if names[role] is not None]
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in specials])

    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", defaults["add_bos_token"]))
    add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
    tokenizer.post_processor = _post_processor(names["bos"] if add_bos else None, names["eos"] if add_eos else None,
                                               tokenizer)
    tokenizer_config = {
        "tokenizer_class": _ARCHITECTURES[_gguf_architecture(config)]["tokenizer_class"],
        "bos_token": names["bos"], "eos_token": names["eos"], "unk_token": names["unk"], "pad_token": names["pad"],
        "add_bos_token": add_bos, "add_eos_token": add_eos,
        "chat_template": metadata.get("tokenizer.chat_template"),
        "model_max_length": config.get("max_position_embeddings"),
        "clean_up_tokenization_spaces": defaults["clean_up_tokenization_spaces"],
    }
    return tokenizer, tokenizer_config


def _byte_level_bpe(metadata: dict, model_type: str, unk_token):
    """tokenizer.ggml.model = "gpt2": GPT-2 style byte-level BPE over the file's merges."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokens = metadata["tokenizer.ggml.tokens"]
    merges = [tuple(merge.split(" ", 1)) for merge in metadata.get("tokenizer.ggml.merges", ())]
    tokenizer = Tokenizer(models.BPE({token: i for i, token in enumerate(tokens)}, merges, unk_token=unk_token))
    if model_type in ("qwen2", "qwen3"):
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece_bpe(metadata: dict, model_type: str, unk_token):
    """tokenizer.ggml.model = "llama": a SentencePiece BPE vocabulary (Llama 2, Mistral): "▁" marks spaces and
    unknown characters fall back to <0xXX> byte tokens, as transformers' LlamaConverter builds it."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    tokens = metadata["tokenizer.ggml.tokens"]
    if "tokenizer.ggml.merges" in metadata:
        merges = [tuple(merge.split(" ", 1)) for merge in metadata["tokenizer.ggml.merges"]]
    else:
        merges = merges_from_scores(tokens, metadata["tokenizer.ggml.scores"])
    tokenizer = Tokenizer(models.BPE({token: i for i, token in enumerate(tokens)}, merges, unk_token=unk_token,
                                     fuse_unk=True, byte_fallback=True))
    add_space_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
    tokenizer.normalizer = normalizers.Sequence(
        ([normalizers.Prepend("▁")] if add_space_prefix else []) + [normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.ByteFallback(), decoders.Fuse(), decoders.Replace("▁", " ")] +
        ([decoders.Strip(" ", 1, 0)] if add_space_prefix else []))
    return tokenizer


def merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """BPE merges for a SentencePiece vocabulary that ships only scores: every split of a piece into two pieces,
    best-scored piece first; within a piece, pairs with better-scored halves first (transformers' order)."""
    score = dict(zip(tokens, scores))
    ranked = []
    for piece, piece_score in score.items():
        pairs = [(piece[:cut], piece[cut:]) for cut in range(1, len(piece))
                 if piece[:cut] in score and piece[cut:] in score]
        pairs.sort(key=lambda pair: (score[pair[0]], score[pair[1]]), reverse=True)
        ranked += [(piece_score, pair) for pair in pairs]
    ranked.sort(key=lambda entry: entry[0], reverse=True)  # stable: keeps the order within equal scores
    return [pair for _, pair in ranked]


# tokenizer.ggml.model -> (builder, what llama.cpp / transformers assume when the file is silent)
_TOKENIZER_BUILDERS = {
    # llama.cpp adds no BOS to byte-level vocabularies unless asked; transformers' GGUF loader cleans up spaces
    "gpt2": (_byte_level_bpe, {"add_bos_token": False, "clean_up_tokenization_spaces": True}),
    "llama": (_sentencepiece_bpe, {"add_bos_token": True, "clean_up_tokenization_spaces": False}),
}


def _token_ids(metadata: dict, config: dict, path: str) -> dict:
    """role -> token id (or None), checked against the vocabulary size."""
    ids = {"bos": config["bos_token_id"], "eos": config["eos_token_id"], "unk": config["unk_token_id"],
           "pad": config["pad_token_id"]}
    vocab_size = len(metadata["tokenizer.ggml.tokens"])
    for role, i in ids.items():
        if i is not None and not 0 <= i < vocab_size:
            raise ValueError(f"{path}: GGUF {role} token id {i} is outside the vocabulary of {vocab_size} tokens")
    return ids


def _post_processor(bos_token, eos_token, tokenizer):
    """BOS/EOS around each sequence as the file asks (None: nothing to add)."""
    from tokenizers import processors

    if bos_token is None and eos_token is None:
        return None

    def around(sequence: str, type_id: int) -> list[str]:
        return ([f"{bos_token}:{type_id}"] if bos_token else []) + [f"${sequence}:{type_id}"] + \
            ([f"{eos_token}:{type_id}"] if eos_token else [])

    special = [(token, tokenizer.token_to_id(token)) for token in dict.fromkeys(filter(None, (bos_token, eos_token)))]
    return processors.TemplateProcessing(single=around("A", 0), pair=around("A", 0) + around("B", 1),
                                         special_tokens=special)
