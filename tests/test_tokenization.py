"""Tokenizers against transformers 4.57.6's fast tokenizers (the oracle), on real vocabularies laid out per family."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
from leanformers.tokenization import AutoTokenizer, BatchEncoding, Tokenizer  # noqa: E402

MODELS = Path(__file__).parents[1] / ".models"
needs_models = pytest.mark.skipif(not (MODELS / "minilm" / "vocab.txt").exists(),
                                  reason="run scripts/fetch_models.sh first")

HARD_TEXTS = [
    "Hello, unaffable world!",
    "Crème brûlée à la façon de Zoë — naïve café.",
    "東京は日本の首都です。北京欢迎你",
    "emoji 😀👍🏽 and flags 🇫🇷!",
    "tabs\tand\nnewlines\r\n  and   repeated    spaces  ",
    "a" * 300 + " pneumonoultramicroscopicsilicovolcanoconiosis",
    "",
    " leading and trailing ",
    "I can't believe it's not butter; they're here, we've won.",
]
PAIRS = [("What is the capital of France?", "Paris is the capital and largest city of France, on the Seine."),
         ("short", "a considerably longer second sentence with many words in it to force truncation")]
WORDS = [["Hello", "wörld", "東京"], ["unaffable", "!"]]


def both(folder, **kwargs):
    ours = AutoTokenizer.from_pretrained(folder, **kwargs)
    oracle = transformers.AutoTokenizer.from_pretrained(str(folder), use_fast=True, **kwargs)
    return ours, oracle


def same_encoding(ours, oracle, *args, words=True, **kwargs):
    """Equal outputs and alignments, or both raise (e.g. a pair too long for the asked truncation)."""
    try:
        expected = oracle(*args, **kwargs)
    except Exception:
        with pytest.raises(Exception):
            ours(*args, **kwargs)
        return None
    got = ours(*args, **kwargs)
    assert isinstance(got, BatchEncoding)
    assert dict(got) == dict(expected), (args, kwargs)
    if words and expected.encodings:
        for i in range(len(expected.encodings)):
            assert got.word_ids(i) == expected.word_ids(i)
            assert got.sequence_ids(i) == expected.sequence_ids(i)
            assert got.tokens(i) == expected.tokens(i)
    return got


def check_family(ours, oracle, pairs=True):
    """The full call surface on one tokenizer pair."""
    assert ours.model_input_names == list(oracle.model_input_names)
    assert ours.all_special_tokens == oracle.all_special_tokens
    assert ours.all_special_ids == oracle.all_special_ids
    assert len(ours) == len(oracle) and ours.vocab_size == oracle.vocab_size
    for attr in ("bos_token_id", "eos_token_id", "unk_token_id", "sep_token_id", "pad_token_id", "cls_token_id",
                 "mask_token_id", "model_max_length", "padding_side"):
        assert getattr(ours, attr) == getattr(oracle, attr), attr
    for text in HARD_TEXTS:
        same_encoding(ours, oracle, text, return_offsets_mapping=True, return_special_tokens_mask=True)
        ids = oracle(text)["input_ids"]
        assert ours.tokenize(text) == oracle.tokenize(text)
        for skip in (False, True):
            for clean in (None, False, True):
                assert ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean) == \
                    oracle.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
    pad = oracle.pad_token is not None
    same_encoding(ours, oracle, HARD_TEXTS, padding=pad, return_length=True)
    if pad:
        for side in ("left", "right"):
            same_encoding(ours, oracle, HARD_TEXTS[:4], padding="max_length", max_length=40, truncation=True,
                          padding_side=side, return_offsets_mapping=True)
        same_encoding(ours, oracle, HARD_TEXTS[:3], padding=True, pad_to_multiple_of=8)
        got = ours.pad([ours(t) for t in HARD_TEXTS[:3]], return_tensors="np")
        expected = oracle.pad([oracle(t) for t in HARD_TEXTS[:3]], return_tensors="np")
        assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in expected.items()}
    same_encoding(ours, oracle, HARD_TEXTS[5], truncation=True, max_length=12, stride=3,
                  return_overflowing_tokens=True, return_offsets_mapping=True)
    if pairs:
        for strategy in ("longest_first", "only_first", "only_second", True):
            for first, second in PAIRS:
                same_encoding(ours, oracle, first, second, truncation=strategy, max_length=14,
                              return_offsets_mapping=True)
        firsts, seconds = zip(*PAIRS)
        same_encoding(ours, oracle, list(firsts), list(seconds), padding=pad, truncation="only_second", max_length=20,
                      stride=2, return_overflowing_tokens=True, return_special_tokens_mask=True)
    ids = oracle(HARD_TEXTS[:3], padding=pad)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == oracle.batch_decode(ids, skip_special_tokens=True)
    assert ours.convert_ids_to_tokens(ids[0]) == oracle.convert_ids_to_tokens(ids[0])
    tokens = oracle.convert_ids_to_tokens(ids[0])
    assert ours.convert_tokens_to_ids(tokens + ["no-such-token-xyz"]) == \
        oracle.convert_tokens_to_ids(tokens + ["no-such-token-xyz"])
    assert ours.get_vocab() == oracle.get_vocab()
    assert ours.build_inputs_with_special_tokens([5, 6], [7]) == oracle.build_inputs_with_special_tokens([5, 6], [7])


# ---------------------------------------------------------------- WordPiece
@needs_models
def test_minilm_tokenizer_json():
    ours, oracle = both(MODELS / "minilm")
    assert ours("Hello, unaffable world!")["input_ids"] == [101, 7592, 1010, 14477, 20961, 3468, 2088, 999, 102]
    check_family(ours, oracle)
    same_encoding(ours, oracle, WORDS, is_split_into_words=True, padding=True)
    same_encoding(ours, oracle, WORDS[0], is_split_into_words=True)
    enc = ours(["Hello world", "Hi"], padding=True, return_tensors="pt")
    assert enc.input_ids.shape == (2, 4) and enc.to("cpu") is enc
    assert enc.char_to_token(0, 6) == oracle(["Hello world", "Hi"]).char_to_token(0, 6)
    assert tuple(enc.token_to_chars(0, 2)) == (6, 11)


@needs_models
@pytest.mark.parametrize("options", [{}, {"do_lower_case": False}, {"do_lower_case": True, "strip_accents": False},
                                     {"do_lower_case": False, "strip_accents": True},
                                     {"tokenize_chinese_chars": False}])
def test_wordpiece_vocab_txt_only(tmp_path, options):
    shutil.copy(MODELS / "minilm" / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**options, "model_max_length": 64}))
    ours, oracle = both(tmp_path)
    check_family(ours, oracle)


@needs_models
@pytest.mark.parametrize("model_type", ["distilbert", "electra"])
def test_wordpiece_families(tmp_path, model_type):
    shutil.copy(MODELS / "minilm" / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    ours, oracle = both(tmp_path)
    assert ours.model_input_names == list(oracle.model_input_names)
    same_encoding(ours, oracle, PAIRS[0][0], PAIRS[0][1])


# ---------------------------------------------------------------- byte-level BPE
def gpt2_folder(tmp_path, model_type, **config):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(MODELS / "gpt2_vocab" / name, tmp_path / name)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    if config:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


@needs_models
def test_gpt2_layout(tmp_path):
    ours, oracle = both(gpt2_folder(tmp_path, "gpt2"))
    assert ours("Hello world")["input_ids"] == [15496, 995]
    check_family(ours, oracle)
    with pytest.raises(ValueError, match="add_prefix_space"):
        ours(WORDS, is_split_into_words=True)


@needs_models
@pytest.mark.parametrize("config", [{}, {"add_prefix_space": True}, {"trim_offsets": False},
                                    {"add_prefix_space": True, "trim_offsets": False, "model_max_length": 32}])
def test_roberta_layout(tmp_path, config):
    ours, oracle = both(gpt2_folder(tmp_path, "roberta", **config))
    check_family(ours, oracle)
    if config.get("add_prefix_space"):
        same_encoding(ours, oracle, WORDS, is_split_into_words=True, padding=True, return_offsets_mapping=True)
    same_encoding(ours, oracle, "Fill the <mask> please", return_offsets_mapping=True)


# ---------------------------------------------------------------- SentencePiece
SPM = {"bpe": "botchan_en_bpe_1000.model", "unigram": "botchan_en_unigram_1000.model",
       "ja": "kyoto_ja_unigram_8000.model"}


def spm_folder(tmp_path, model, filename, model_type, **config):
    shutil.copy(MODELS / "spm" / SPM[model], tmp_path / filename)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    if config:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


@needs_models
@pytest.mark.parametrize("model", ["bpe", "unigram", "ja"])
@pytest.mark.parametrize("filename,model_type", [("spiece.model", "albert"), ("spiece.model", "t5"),
                                                 ("sentencepiece.bpe.model", "xlm-roberta")])
def test_sentencepiece_families(tmp_path, model, filename, model_type):
    ours, oracle = both(spm_folder(tmp_path, model, filename, model_type))
    check_family(ours, oracle)
    same_encoding(ours, oracle, WORDS, is_split_into_words=True, padding=True, return_offsets_mapping=True)
    if model_type == "t5":
        same_encoding(ours, oracle, ["summarize: a long text", "b"], text_target=["short", "a b c"], padding=True)
        same_encoding(ours, oracle, "The <extra_id_0> walks in <extra_id_1> park")
        assert ours.convert_tokens_to_ids("<extra_id_0>") == oracle.convert_tokens_to_ids("<extra_id_0>")
    if model_type == "xlm-roberta":
        same_encoding(ours, oracle, "Fill the <mask> please", return_offsets_mapping=True)


@needs_models
@pytest.mark.parametrize("tokenizer_class,langs", [("MBartTokenizer", ("ro_RO", "de_DE")),
                                                   ("MBart50Tokenizer", ("fr_XX", "sl_SI"))])
def test_mbart_language_codes(tmp_path, tokenizer_class, langs):
    folder = spm_folder(tmp_path, "unigram", "sentencepiece.bpe.model", "mbart", tokenizer_class=tokenizer_class)
    ours, oracle = both(folder, src_lang=langs[0], tgt_lang=langs[1])
    check_family(ours, oracle)
    same_encoding(ours, oracle, ["A sentence to translate.", "Another one"], text_target=["Ein Satz.", "Noch"],
                  padding=True)
    ours.src_lang = oracle.src_lang = "en_XX"
    same_encoding(ours, oracle, "A sentence to translate.")
    with pytest.raises(ValueError, match="language code"):
        ours.src_lang = "xx_YY"


# ---------------------------------------------------------------- chat templates, saving, errors
CHAT = [{"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "Thanks! <|endoftext|>"}]
TEMPLATE = ("{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] | trim }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}{{ eos_token }}{{ {'a': 'é<'} | tojson }}"
            "{% if messages|length > 9 %}{{ raise_exception('too long') }}{% endif %}")


@needs_models
@pytest.mark.parametrize("as_file", [False, True])
def test_chat_template(tmp_path, as_file):
    config = {} if as_file else {"chat_template": TEMPLATE}
    folder = gpt2_folder(tmp_path, "gpt2", **config)
    if as_file:
        (folder / "chat_template.jinja").write_text(TEMPLATE)
    ours, oracle = both(folder)
    for kwargs in ({"tokenize": False}, {"add_generation_prompt": True}, {"return_dict": True},
                   {"tokenize": False, "continue_final_message": True}):
        expected = oracle.apply_chat_template(CHAT, **kwargs)
        got = ours.apply_chat_template(CHAT, **kwargs)
        assert (dict(got) if kwargs.get("return_dict") else got) == \
            (dict(expected) if kwargs.get("return_dict") else expected)
    assert ours.apply_chat_template([CHAT, CHAT[:2]], tokenize=False) == \
        oracle.apply_chat_template([CHAT, CHAT[:2]], tokenize=False)
    with pytest.raises(Exception, match="too long"):
        ours.apply_chat_template(CHAT * 3)


@needs_models
def test_save_pretrained_round_trip(tmp_path):
    (tmp_path / "src").mkdir()
    ours = AutoTokenizer.from_pretrained(gpt2_folder(tmp_path / "src", "roberta", add_prefix_space=True))
    ours.add_tokens(["<new_token>"])
    ours.add_special_tokens({"additional_special_tokens": ["<special_one>"]})
    paths = ours.save_pretrained(tmp_path / "saved")
    assert {Path(p).name for p in paths} == {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                             "vocab.json", "merges.txt"}  # the last two for the slow classes
    again = AutoTokenizer.from_pretrained(tmp_path / "saved")
    oracle = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    text = "Hi <new_token> and <special_one> <mask> there"
    for tok in (again, oracle):
        assert tok(text)["input_ids"] == ours(text)["input_ids"]
    assert again.all_special_ids == oracle.all_special_ids
    assert again.decode(ours(text)["input_ids"], skip_special_tokens=True) == \
        oracle.decode(ours(text)["input_ids"], skip_special_tokens=True)


@needs_models
def test_setting_special_tokens():
    ours, oracle = both(MODELS / "minilm")
    ours.pad_token = oracle.pad_token = "[SEP]"
    assert ours.pad_token_id == oracle.pad_token_id
    ours.pad_token_id = oracle.pad_token_id = 0
    assert ours.pad_token == oracle.pad_token
    same_encoding(ours, oracle, ["a", "b c d"], padding=True)


@needs_models
def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        AutoTokenizer.from_pretrained(tmp_path)
    ours = AutoTokenizer.from_pretrained(MODELS / "minilm")
    for bad in (None, 5, [1, 2]):
        with pytest.raises(ValueError):
            ours(bad)
    with pytest.raises(ValueError, match="padding"):
        ours("x", padding="maximum")
    with pytest.raises(TypeError, match="text_pair"):
        ours(["a", "b"], "c")
    gpt2 = AutoTokenizer.from_pretrained(gpt2_folder(tmp_path, "gpt2"))
    with pytest.raises(ValueError, match="padding token"):
        gpt2(["a", "b c"], padding=True)
    with pytest.raises(ValueError, match="Unable to create tensor"):
        gpt2(["a", "b c"], return_tensors="pt")
    with pytest.raises(TypeError):
        Tokenizer("not a backend")


def test_import_does_not_load_torch():
    code = "import sys, leanformers.tokenization; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -------------------------------------------------------- vocab.json + SentencePiece (slow-only in transformers)
def spm_vocab_folder(tmp_path, files: dict, model_type: str, head: list[str], tail: list[str]):
    """Copy SentencePiece models under their family's names and number their pieces in a vocab.json."""
    import sentencepiece

    pieces = list(head)
    for source, target in files.items():
        shutil.copy(MODELS / "spm" / SPM[source], tmp_path / target)
        processor = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / target))
        pieces += [p for p in map(processor.id_to_piece, range(3, processor.get_piece_size())) if p not in pieces]
    pieces += tail
    (tmp_path / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(pieces)}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    return tmp_path


SEQ2SEQ_TEXTS = ["Hello, unaffable world!", "I was a  naughty boy.", "Crème brûlée 東京 😀", "",
                 " tabs\tand\nnew  lines ", "an <unk> inside and </s> too"]


def check_seq2seq(ours, oracle, texts, targets, language_tokens=0):
    # M2M100 numbers its language tokens after vocab.json but leaves them out of len(); ours counts them
    assert ours.all_special_ids == oracle.all_special_ids and len(ours) == len(oracle) + language_tokens
    assert ours.model_input_names == list(oracle.model_input_names)
    for text in texts + targets:
        same_encoding(ours, oracle, text)
        same_encoding(ours, oracle, text_target=text)
        ids = oracle(text_target=text)["input_ids"]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == oracle.decode(ids, skip_special_tokens=skip)
    same_encoding(ours, oracle, texts, text_target=targets, padding=True, truncation=True, max_length=10,
                  )
    got = ours(texts, text_target=targets, padding=True, return_tensors="pt")
    expected = oracle(texts, text_target=targets, padding=True, return_tensors="pt")
    assert all(got[key].tolist() == expected[key].tolist() for key in expected) and set(got) == set(expected)


@needs_models
@pytest.mark.parametrize("source,target", [("unigram", "bpe"), ("bpe", "unigram")])
def test_marian(tmp_path, source, target):
    pytest.importorskip("sentencepiece")
    folder = spm_vocab_folder(tmp_path, {source: "source.spm", target: "target.spm"}, "marian",
                              ["</s>", "<unk>"], [">>fr<<", ">>de<<", "<pad>"])
    ours, oracle = both(folder)
    texts = SEQ2SEQ_TEXTS + [">>fr<< I was a boy.", ">>de<<Hello"]
    check_seq2seq(ours, oracle, texts, list(reversed(texts)))


@needs_models
def test_m2m100(tmp_path):
    pytest.importorskip("sentencepiece")
    folder = spm_vocab_folder(tmp_path, {"bpe": "sentencepiece.bpe.model"}, "m2m_100",
                              ["<s>", "<pad>", "</s>", "<unk>"], [])
    ours, oracle = both(folder, src_lang="fr", tgt_lang="de")
    check_seq2seq(ours, oracle, SEQ2SEQ_TEXTS + ["Hello __de__ world"], list(reversed(SEQ2SEQ_TEXTS)),
                  language_tokens=100)
    ours.src_lang = oracle.src_lang = "ja"
    same_encoding(ours, oracle, SEQ2SEQ_TEXTS[0])
    assert ours.convert_tokens_to_ids("__ja__") == oracle.get_lang_id("ja")


@needs_models
@pytest.mark.parametrize("config", [
    {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
     "unk_token": "<|endoftext|>"},
    {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
     "unk_token": "<|endoftext|>", "add_eos_token": True, "pad_token": "<|endoftext|>"},
    {"tokenizer_class": "Qwen2TokenizerFast"},
    {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"},
    {"tokenizer_class": "GPT2TokenizerFast", "add_bos_token": True, "model_max_length": 16, "padding_side": "left",
     "pad_token": "<|endoftext|>"},
])
def test_tokenizer_json_families(tmp_path, config):
    """A tokenizer.json under several tokenizer_class names: defaults, returned keys and post-processors."""
    (tmp_path / "src").mkdir()
    AutoTokenizer.from_pretrained(gpt2_folder(tmp_path / "src", "gpt2")).save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "tok" / "special_tokens_map.json").unlink()
    ours, oracle = both(tmp_path / "tok")
    check_family(ours, oracle, pairs=True)


@needs_models
def test_repo_id_from_hf_cache_offline(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(MODELS / "minilm" / name, snapshot / name)
    (tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs").mkdir()
    (tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2", cache_dir=str(tmp_path))
    assert tok("Hello, unaffable world!")["input_ids"] == [101, 7592, 1010, 14477, 20961, 3468, 2088, 999, 102]
    with pytest.raises(FileNotFoundError, match="no-such/model"):
        AutoTokenizer.from_pretrained("no-such/model", cache_dir=str(tmp_path))
