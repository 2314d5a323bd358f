"""transformers' tokenizer class names as entry points, and save_pretrained's legacy vocabulary files.

`leanformers.BertTokenizerFast.from_pretrained(folder)` must give what `transformers.BertTokenizerFast` gives on the
same folder (a slow name reads the legacy files, as transformers' slow class does); and a folder our
`tokenizer.save_pretrained` wrote must load in transformers' SLOW classes (vocab.txt, vocab.json + merges.txt, the
SentencePiece model) with equal ids.
"""
import json
import shutil
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
import leanformers  # noqa: E402

MODELS = Path(__file__).parents[1] / ".models"
pytestmark = pytest.mark.skipif(not (MODELS / "minilm" / "vocab.txt").exists(), reason="run scripts/fetch_models.sh")
TEXTS = ["Hello, unaffable world!", "Crème brûlée à la façon de Zoë — naïve café.", "東京は日本の首都です。",
         "tabs\tand\nnewlines  and   spaces ", "I can't believe it's not butter; they're here.", ""]
PAIR = ("What is the capital of France?", "Paris is the capital and largest city of France.")


def _folder(tmp_path: Path, files: dict, model_type: str, **tokenizer_config) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for source, target in files.items():
        shutil.copy(MODELS / source, tmp_path / target)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    if tokenizer_config:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return tmp_path


GPT2_FILES = {"gpt2_vocab/vocab.json": "vocab.json", "gpt2_vocab/merges.txt": "merges.txt"}
FOLDERS = {
    "minilm": lambda tmp: MODELS / "minilm",
    "vocab.txt": lambda tmp: _folder(tmp, {"minilm/vocab.txt": "vocab.txt"}, "bert"),
    "gpt2": lambda tmp: _folder(tmp, GPT2_FILES, "gpt2"),
    "t5": lambda tmp: _folder(tmp, {"spm/botchan_en_bpe_1000.model": "spiece.model"}, "t5"),
    "albert": lambda tmp: _folder(tmp, {"spm/botchan_en_unigram_1000.model": "spiece.model"}, "albert"),
    "xlmr": lambda tmp: _folder(tmp, {"spm/kyoto_ja_unigram_8000.model": "sentencepiece.bpe.model"}, "xlm-roberta"),
    "mbart": lambda tmp: _folder(tmp, {"spm/botchan_en_unigram_1000.model": "sentencepiece.bpe.model"}, "mbart"),
}
CLASSES = [
    ("BertTokenizer", "minilm"), ("BertTokenizerFast", "minilm"), ("BertTokenizer", "vocab.txt"),
    ("BertTokenizerFast", "vocab.txt"), ("DistilBertTokenizer", "minilm"), ("DistilBertTokenizerFast", "minilm"),
    ("ElectraTokenizerFast", "vocab.txt"), ("GPT2Tokenizer", "gpt2"), ("GPT2TokenizerFast", "gpt2"),
    ("RobertaTokenizer", "gpt2"), ("RobertaTokenizerFast", "gpt2"), ("BartTokenizer", "gpt2"),
    ("BartTokenizerFast", "gpt2"), ("T5Tokenizer", "t5"), ("T5TokenizerFast", "t5"), ("AlbertTokenizer", "albert"),
    ("AlbertTokenizerFast", "albert"), ("XLMRobertaTokenizer", "xlmr"), ("XLMRobertaTokenizerFast", "xlmr"),
    ("MBartTokenizerFast", "mbart"),
]


def assert_same_ids(ours, theirs, pairs=True, fast=None):
    """Equal outputs. `fast`: transformers' fast twin of a slow `theirs`; where transformers' own slow and fast
    classes disagree (pair truncation order, ALBERT's whitespace), ours gives the fast result."""
    assert ours.model_input_names == list(theirs.model_input_names)
    assert ours.all_special_ids == theirs.all_special_ids
    calls = [((text,), {}) for text in TEXTS] + ([(PAIR, {"truncation": True, "max_length": 12})] if pairs else [])
    for args, kwargs in calls:
        expected = dict(theirs(*args, **kwargs))
        if fast is not None and dict(fast(*args, **kwargs)) != expected:
            expected = dict(fast(*args, **kwargs))
        assert dict(ours(*args, **kwargs)) == expected, args
        ids = expected["input_ids"]
        decoded = {theirs.decode(ids, skip_special_tokens=True)}  # the slow class's clean-up default applies, and
        if fast is not None:  # where the slow class decodes differently (ALBERT's trailing space), the fast one
            decoded.add(fast.decode(ids, skip_special_tokens=True))
        assert ours.decode(ids, skip_special_tokens=True) in decoded


def test_every_name_is_exported_lazily():
    import subprocess
    import sys

    from leanformers.tokenization import TOKENIZER_CLASSES

    for name in TOKENIZER_CLASSES:
        assert getattr(leanformers, name) is TOKENIZER_CLASSES[name]
        assert hasattr(transformers, name), f"{name} is not a transformers class name"
    code = "import sys, leanformers; leanformers.BertTokenizerFast; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name,folder", CLASSES, ids=[f"{n}-{f}" for n, f in CLASSES])
def test_named_class_equals_transformers(name, folder, tmp_path):
    path = FOLDERS[folder](tmp_path / "tok")
    ours = getattr(leanformers, name).from_pretrained(path)
    theirs = getattr(transformers, name).from_pretrained(str(path))
    fast = None if name.endswith("Fast") else getattr(transformers, name + "Fast").from_pretrained(str(path))
    assert_same_ids(ours, theirs, fast=fast)


def test_marian_slow_class(tmp_path):
    from test_fuzz_tokenizers import _marian

    marian = _marian(tmp_path / "marian")
    assert_same_ids(leanformers.MarianTokenizer.from_pretrained(marian),
                    transformers.MarianTokenizer.from_pretrained(str(marian)), pairs=False)


def test_slow_name_ignores_tokenizer_json(tmp_path):
    """A slow class reads vocab.txt even next to a tokenizer.json that says otherwise, as transformers' does."""
    folder = tmp_path / "tok"
    shutil.copytree(MODELS / "minilm", folder)
    state = json.loads((folder / "tokenizer.json").read_text())
    vocab = state["model"]["vocab"]
    vocab["hello"], vocab["world"] = vocab["world"], vocab["hello"]  # a tokenizer.json that disagrees with vocab.txt
    (folder / "tokenizer.json").write_text(json.dumps(state))
    assert_same_ids(leanformers.BertTokenizer.from_pretrained(folder),
                    transformers.BertTokenizer.from_pretrained(str(folder)),
                    fast=transformers.BertTokenizerFast.from_pretrained(str(folder), from_slow=True))
    assert leanformers.BertTokenizer.from_pretrained(folder)("hello")["input_ids"] == [101, 7592, 102]
    assert leanformers.BertTokenizerFast.from_pretrained(folder)("hello")["input_ids"] == [101, 2088, 102] == \
        transformers.BertTokenizerFast.from_pretrained(str(folder))("hello")["input_ids"]


def test_class_name_overrides_the_folder_class():
    """DistilBertTokenizerFast on a BERT folder: DistilBERT's returned keys, as transformers gives."""
    ours = leanformers.DistilBertTokenizerFast.from_pretrained(MODELS / "minilm")
    theirs = transformers.DistilBertTokenizerFast.from_pretrained(str(MODELS / "minilm"))
    assert "token_type_ids" not in ours("Hello") and "token_type_ids" not in theirs("Hello")
    assert_same_ids(ours, theirs)


def test_built_from_files_directly(tmp_path):
    vocab, merges = MODELS / "gpt2_vocab" / "vocab.json", MODELS / "gpt2_vocab" / "merges.txt"
    pairs = [(leanformers.BertTokenizer(MODELS / "minilm" / "vocab.txt"),
              transformers.BertTokenizer(str(MODELS / "minilm" / "vocab.txt"))),
             (leanformers.BertTokenizerFast(vocab_file=MODELS / "minilm" / "vocab.txt", do_lower_case=False),
              transformers.BertTokenizerFast(vocab_file=str(MODELS / "minilm" / "vocab.txt"), do_lower_case=False)),
             (leanformers.GPT2TokenizerFast(vocab, merges), transformers.GPT2TokenizerFast(str(vocab), str(merges))),
             (leanformers.RobertaTokenizer(vocab_file=vocab, merges_file=merges),
              transformers.RobertaTokenizer(vocab_file=str(vocab), merges_file=str(merges))),
             (leanformers.T5Tokenizer(MODELS / "spm" / "botchan_en_bpe_1000.model"),
              transformers.T5Tokenizer(str(MODELS / "spm" / "botchan_en_bpe_1000.model"))),
             (leanformers.PreTrainedTokenizerFast(tokenizer_file=MODELS / "minilm" / "tokenizer.json"),
              transformers.PreTrainedTokenizerFast(tokenizer_file=str(MODELS / "minilm" / "tokenizer.json")))]
    for ours, theirs in pairs:
        assert_same_ids(ours, theirs, pairs=False)
    with pytest.raises(TypeError, match="needs vocab_file"):
        leanformers.BertTokenizer()
    with pytest.raises(FileNotFoundError, match="no-such.txt"):
        leanformers.BertTokenizer(tmp_path / "no-such.txt")


# ---------------------------------------------------------------- legacy files for transformers' slow classes
ROUND_TRIPS = [("minilm", "BertTokenizer", ["vocab.txt"]), ("vocab.txt", "BertTokenizer", ["vocab.txt"]),
               ("gpt2", "GPT2Tokenizer", ["vocab.json", "merges.txt"]),
               ("gpt2-roberta", "RobertaTokenizer", ["vocab.json", "merges.txt"]),
               ("t5", "T5Tokenizer", ["spiece.model"]), ("albert", "AlbertTokenizer", ["spiece.model"]),
               ("xlmr", "XLMRobertaTokenizer", ["sentencepiece.bpe.model"])]


@pytest.mark.parametrize("folder,slow_class,files", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_save_pretrained_feeds_the_slow_classes(folder, slow_class, files, tmp_path):
    """transformers' slow class reads our saved folder as it reads the original files: equal ids, added tokens
    included (slow and fast differ in transformers itself on some texts, e.g. ALBERT's whitespace: compare slow with
    slow)."""
    if folder == "gpt2-roberta":
        source = _folder(tmp_path / "src", GPT2_FILES, "roberta")
    else:
        source = FOLDERS[folder](tmp_path / "src")
    ours = leanformers.AutoTokenizer.from_pretrained(source)
    ours.add_tokens(["<new_token>"])
    written = {Path(p).name for p in ours.save_pretrained(tmp_path / "saved")}
    assert set(files) <= written and all((tmp_path / "saved" / f).is_file() for f in files)
    original = getattr(transformers, slow_class).from_pretrained(str(source))
    original.add_tokens(["<new_token>"])
    slow = getattr(transformers, slow_class).from_pretrained(str(tmp_path / "saved"))
    auto_slow = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"), use_fast=False)
    assert type(auto_slow).__name__ == slow_class
    for text in TEXTS + ["with a <new_token> added"]:
        assert slow(text)["input_ids"] == original(text)["input_ids"] == auto_slow(text)["input_ids"], text
    assert len(slow) == len(original) and slow.all_special_ids == original.all_special_ids
    fast = transformers.AutoTokenizer.from_pretrained(str(source))
    fast.add_tokens(["<new_token>"])
    for text in TEXTS + ["with a <new_token> added"]:
        if fast(text)["input_ids"] == original(text)["input_ids"]:  # where transformers' own two agree: so do we
            assert ours(text)["input_ids"] == slow(text)["input_ids"], text
    # a second generation (loaded back from our tokenizer.json) still writes the legacy files
    again = leanformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    again.save_pretrained(tmp_path / "again")
    slow_again = getattr(transformers, slow_class).from_pretrained(str(tmp_path / "again"))
    assert [slow_again(t)["input_ids"] for t in TEXTS] == [original(t)["input_ids"] for t in TEXTS]
