"""Hostile and broken files: one table, the exact error each gets, and nothing written or run where it must not be.

Each row damages a copy of a tiny BERT checkpoint (or builds a broken GGUF / tokenizer), loads it the way a user
would, and checks the exception type, that the message names the file or key at fault, and that the innermost frame
of the traceback is leanformers' own check (not a crash deep inside torch, safetensors or the gguf reader).
"""
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers

import leanformers

MODELS = Path(__file__).parents[1] / ".models"
SENTINEL = "leanformers-pickle-ran"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny BERT masked-LM (safetensors) with the MiniLM tokenizer.json: the folder every row starts from."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=40, max_position_embeddings=40)
    folder = tmp_path_factory.mktemp("tiny")
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}, '
                                           '"unk_token": "a"}}')
    return folder


class RunsCode:
    """Unpickling this object would create the sentinel file: the payload a hostile pytorch_model.bin carries."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# ---------------------------------------------------------------- the damages
def _rewrite_header(folder, change):
    """Apply `change(header_dict)` to model.safetensors' JSON header, keeping the file otherwise as it was."""
    path = folder / "model.safetensors"
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    change(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size:])


def truncated_header(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:40])


def bit_flipped_header(folder):
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[12] ^= 0x55  # inside the JSON header: it stops being JSON
    path.write_bytes(bytes(data))


def huge_header_length(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 2 ** 62) + data[8:])


def overrunning_tensor(folder):
    def grow(header):
        name = next(k for k in header if k != "__metadata__")
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [start, end + 10 ** 9]
        header[name]["shape"] = [header[name]["shape"][0] + 10 ** 9 // 4 // max(header[name]["shape"][-1], 1)] + \
            header[name]["shape"][1:]
    _rewrite_header(folder, grow)


def overrunning_offsets_only(folder):
    def move(header):
        name = next(k for k in header if k != "__metadata__")
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [start + 10 ** 9, end + 10 ** 9]
    _rewrite_header(folder, move)


def pickle_payload(folder):
    (folder / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": RunsCode(folder / SENTINEL)}, folder / "pytorch_model.bin")


def raw_pickle_payload(folder):
    """Not even torch.save's zip layout: a bare pickle stream (the legacy format torch.load also reads)."""
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump(RunsCode(folder / SENTINEL), f)


def _config(folder, change):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def config_not_json(folder):
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 32,')


def config_not_object(folder):
    (folder / "config.json").write_text('["bert", 32]')


def config_negative_size(folder):
    _config(folder, lambda c: c.update(hidden_size=-32))


def config_zero_heads(folder):
    _config(folder, lambda c: c.update(num_attention_heads=0))


def config_size_not_a_number(folder):
    _config(folder, lambda c: c.update(num_hidden_layers="two"))


def config_heads_do_not_divide(folder):
    _config(folder, lambda c: c.update(num_attention_heads=5))


def config_vocab_smaller_than_embeddings(folder):
    _config(folder, lambda c: c.update(vocab_size=60))


def _sharded(folder, shard_name):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    from safetensors import safe_open

    with safe_open(folder / "model-00001-of-00001.safetensors", "pt") as f:
        names = list(f.keys())
    weight_map = {name: "model-00001-of-00001.safetensors" for name in names}
    weight_map[names[0]] = shard_name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def index_missing_shard(folder):
    _sharded(folder, "model-00002-of-00002.safetensors")


def index_shard_outside(folder):
    outside = folder.parent / "outside.safetensors"
    shutil.copy(folder / "model.safetensors", outside)  # a real file there: the check must be on the path itself
    _sharded(folder, "../outside.safetensors")


def index_shard_absolute(folder):
    outside = folder.parent / "outside_abs.safetensors"
    shutil.copy(folder / "model.safetensors", outside)
    _sharded(folder, str(outside))


def index_not_json(folder):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text("{weight_map")


def tokenizer_not_json(folder):
    (folder / "tokenizer.json").write_text("{not json")


def tokenizer_config_not_json(folder):
    (folder / "tokenizer_config.json").write_text("[1, 2")


def gguf_bad_magic(folder):
    (folder / "model.gguf").write_bytes(b"GGML" + b"\x00" * 60)


def gguf_truncated(folder):
    if not (MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file():
        pytest.skip("run scripts/fetch_models.sh for the SmolLM2 GGUF")
    with open(MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf", "rb") as f:
        (folder / "model.gguf").write_bytes(f.read(3_000_000))  # the header and metadata, a sliver of the tensors


def load_model(folder):
    return leanformers.AutoModelForMaskedLM.from_pretrained(folder)


def load_tokenizer(folder):
    return leanformers.AutoTokenizer.from_pretrained(folder)


def load_gguf(folder):
    return leanformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.gguf")


# damage, loader, exception type, regex the message must match
TABLE = [
    (truncated_header, load_model, ValueError, r"model\.safetensors is not a valid safetensors file"),
    (bit_flipped_header, load_model, ValueError, r"model\.safetensors is not a valid safetensors file"),
    (huge_header_length, load_model, ValueError, r"model\.safetensors is not a valid safetensors file"),
    (overrunning_tensor, load_model, ValueError, r"model\.safetensors is not a valid safetensors file"),
    (overrunning_offsets_only, load_model, ValueError, r"model\.safetensors is not a valid safetensors file"),
    (pickle_payload, load_model, ValueError, r"pytorch_model\.bin holds more than plain weights; refusing"),
    (raw_pickle_payload, load_model, ValueError, r"pytorch_model\.bin holds more than plain weights; refusing"),
    (config_not_json, load_model, ValueError, r"config\.json is not valid JSON"),
    (config_not_object, load_model, ValueError, r"config\.json .* is not a JSON object"),
    (config_negative_size, load_model, ValueError, r"config\.json .*'hidden_size'.* -32"),
    (config_zero_heads, load_model, ValueError, r"config\.json .*'num_attention_heads'.* 0"),
    (config_size_not_a_number, load_model, ValueError, r"config\.json .*'num_hidden_layers'.* 'two'"),
    (config_heads_do_not_divide, load_model, ValueError, r"config\.json .*hidden_size \(32\) .* num_attention_heads"
                                                         r" \(5\)"),
    (config_vocab_smaller_than_embeddings, load_model, ValueError,
     r"weight 'bert\.embeddings\.word_embeddings\.weight' .* \(120, 32\) but the config .* \(60, 32\)"),
    (index_missing_shard, load_model, FileNotFoundError,
     r"model\.safetensors\.index\.json names shard 'model-00002-of-00002\.safetensors'.* no such file"),
    (index_shard_outside, load_model, ValueError,
     r"model\.safetensors\.index\.json names shard '\.\./outside\.safetensors' outside"),
    (index_shard_absolute, load_model, ValueError, r"model\.safetensors\.index\.json names shard '/.*' outside"),
    (index_not_json, load_model, ValueError, r"model\.safetensors\.index\.json is not valid JSON"),
    (tokenizer_not_json, load_tokenizer, ValueError, r"tokenizer\.json is not a valid tokenizers file"),
    (tokenizer_config_not_json, load_tokenizer, ValueError, r"tokenizer_config\.json is not valid JSON"),
    (gguf_bad_magic, load_gguf, ValueError, r"model\.gguf is not a GGUF file: it starts with b'GGML'"),
    (gguf_truncated, load_gguf, ValueError, r"model\.gguf is a damaged GGUF file"),
]


def _innermost_file(err: BaseException) -> str:
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename


@pytest.mark.parametrize("damage,load,error,message", TABLE, ids=[row[0].__name__ for row in TABLE])
def test_hostile_file(tiny, tmp_path, damage, load, error, message):
    folder = tmp_path / "model"
    shutil.copytree(tiny, folder)
    damage(folder)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(error, match=message) as info:
        load(folder)
    innermost = _innermost_file(info.value)
    assert os.sep + "leanformers" + os.sep in innermost, f"the error comes from {innermost}, not leanformers' check"
    assert not (folder / SENTINEL).exists(), "the pickle payload ran"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "loading wrote files"


@pytest.mark.parametrize("name", ["../../etc", "org/../../etc", "/etc/passwd/x", "org/..", "a/b/c", "org/-x",
                                  "org/x--y", "org/name\\..\\x", "~/models"])
def test_repo_id_tricks(name, tmp_path, monkeypatch):
    """Names that are not an existing folder must be a well-formed repo id: never a path out of the cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a valid Hugging Face repo id"):
        leanformers.AutoConfig.from_pretrained(name, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("kwargs,what", [({"subfolder": "../.."}, "subfolder"), ({"subfolder": "/etc"}, "subfolder"),
                                         ({"revision": "../../../etc"}, "revision"),
                                         ({"revision": "/abs"}, "revision")])
def test_path_arguments_cannot_escape(kwargs, what, tmp_path, monkeypatch):
    """subfolder= and revision= stay inside the folder or the repo's cache entry."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "config.json").write_text('{"model_type": "bert"}')
    for name in ("org/name", str(tmp_path / "secret" / "inner")):
        os.makedirs(name, exist_ok=True) if name.startswith("/") else None
        with pytest.raises(ValueError, match=f"{what}=.* must stay inside"):
            leanformers.AutoConfig.from_pretrained(name, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_gguf_file_cannot_escape_the_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="gguf_file=.* must stay inside"):
        leanformers.AutoModelForCausalLM.from_pretrained("org/name", gguf_file="../../x.gguf",
                                                         cache_dir=str(tmp_path / "cache"))


def test_loading_writes_nothing_outside_the_cache(tmp_path):
    """Load a model, its tokenizer and a pipeline in a fresh process whose cwd, HOME, TMPDIR and HF cache are empty
    folders, from a read-only checkpoint folder: afterwards only the cache may have gained files."""
    folder = tmp_path / "ro"
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=40, max_position_embeddings=40)
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    shutil.copy(MODELS / "minilm" / "tokenizer.json", folder / "tokenizer.json")
    for place in ("cwd", "home", "tmp", "cache"):
        (tmp_path / place).mkdir()
    for path in [folder, *folder.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    code = textwrap.dedent(f"""
        import leanformers
        model = leanformers.AutoModelForMaskedLM.from_pretrained({str(folder)!r})
        tok = leanformers.AutoTokenizer.from_pretrained({str(folder)!r})
        fill = leanformers.pipeline("fill-mask", model={str(folder)!r})
        print(len(fill("Paris is the [MASK] of France.")))
    """)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
           "HF_HOME": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(Path(leanformers.__file__).parents[1])}
    try:
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "cwd", env=env, capture_output=True,
                                text=True, timeout=300)
    finally:
        for path in [folder, *folder.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "5"
    for place in ("cwd", "home", "tmp"):
        assert list((tmp_path / place).rglob("*")) == [], f"loading wrote into {place}"
