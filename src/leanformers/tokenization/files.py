"""AutoTokenizer: a folder or repo id -> Tokenizer, from tokenizer.json or from legacy vocabulary files; and saving.

Load order (as transformers): tokenizer.json; else the family's legacy files (vocab.txt, vocab.json + merges.txt,
a SentencePiece model). The family comes from tokenizer_config.json's tokenizer_class, else config.json.
"""
from __future__ import annotations

import json
import os
import shutil

from tokenizers import AddedToken
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import processors

from .. import hub
from . import converters
from .families import MODEL_TYPE_FAMILIES, family_name, family_of
from .tokenizer import SPECIAL_TOKENS, Tokenizer, as_added_token

LEGACY_FILES = {
    "wordpiece": ("vocab.txt",),
    "bpe": ("vocab.json", "merges.txt"),
    "spm": ("spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "spm.model"),
    "marian": ("source.spm", "target.spm", "vocab.json"),
    "m2m100": ("sentencepiece.bpe.model", "vocab.json"),
}
FAIRSEQ_HEAD = ("<s>", "<pad>", "</s>", "<unk>")


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(folder_or_repo_id)` -> Tokenizer (transformers' fast tokenizer behaviour)."""

    def __init__(self):
        raise OSError("AutoTokenizer is built with AutoTokenizer.from_pretrained(name_or_path)")

    @classmethod
    def from_pretrained(cls, name_or_path, revision=None, cache_dir=None, token=None, local_files_only=False,
                        **kwargs) -> Tokenizer:
        kwargs.pop("use_fast", None)
        kwargs.pop("trust_remote_code", None)
        from_slow = kwargs.pop("from_slow", False)  # a slow class: build from the legacy files, not tokenizer.json
        where = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only,
                     subfolder=kwargs.pop("subfolder", ""))
        gguf_file = kwargs.pop("gguf_file", None)
        if gguf_file is not None:  # vocabulary, merges, special tokens and chat template from the GGUF metadata
            from ..gguf import load_gguf

            checkpoint = load_gguf(name_or_path, gguf_file, with_tensors=False, **where)
            return Tokenizer(checkpoint.tokenizer_object, **{**checkpoint.tokenizer_config, **kwargs})

        def find(filename):
            return hub.resolve(name_or_path, filename, required=False, **where)

        init_kwargs = _read_init_kwargs(name_or_path, find, where, kwargs)
        family = family_of(init_kwargs.get("tokenizer_class"))
        tokenizer_file = find("tokenizer.json")
        if tokenizer_file is not None and not from_slow:
            spm_file = next((path for path in map(find, LEGACY_FILES["spm"]) if path), None)
            if spm_file is not None:  # kept so that save_pretrained can write it for the slow classes
                init_kwargs.setdefault("vocab_file", spm_file)
            return Tokenizer(_backend_from_file(tokenizer_file), **init_kwargs)
        kind = family.files or _guess_kind(find)
        if kind is None:
            looked = ["tokenizer.json"] + [f for files in LEGACY_FILES.values() for f in files]
            raise FileNotFoundError(f"{str(name_or_path)!r} has no tokenizer files: looked for {', '.join(looked)}")
        init_kwargs = {**family.converted_defaults, **init_kwargs}
        if init_kwargs.get("tokenizer_class") is None:
            init_kwargs["tokenizer_class"] = {"wordpiece": "BertTokenizer", "bpe": "GPT2Tokenizer"}.get(kind)
        return _from_legacy_files(name_or_path, kind, find, init_kwargs)


def _backend_from_file(tokenizer_file: str) -> BackendTokenizer:
    try:
        return BackendTokenizer.from_file(tokenizer_file)
    except Exception as err:
        raise ValueError(f"{tokenizer_file} is not a valid tokenizers file: {err}") from None


def tokenizer_from_files(files: dict, init_kwargs: dict) -> Tokenizer:
    """`BertTokenizer(vocab_file=...)`-style construction from explicit paths: a tokenizer.json (tokenizer_file),
    else vocab.txt (WordPiece), vocab.json + merges.txt (byte-level BPE) or a SentencePiece model (vocab_file)."""
    if "tokenizer_file" in files:
        return Tokenizer(_backend_from_file(files["tokenizer_file"]), **init_kwargs)
    vocab_file, merges_file = files.get("vocab_file"), files.get("merges_file")
    if vocab_file is None:
        raise TypeError("a tokenizer built from files needs vocab_file (and merges_file for byte-level BPE)")
    if merges_file is not None:
        kind, named = "bpe", {"vocab.json": vocab_file, "merges.txt": merges_file}
    elif vocab_file.endswith(".txt"):
        kind, named = "wordpiece", {"vocab.txt": vocab_file}
    else:
        kind, named = "spm", dict.fromkeys(LEGACY_FILES["spm"], vocab_file)
    for path in named.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such vocabulary file: {path!r}")
    family = family_of(init_kwargs.get("tokenizer_class"))
    return _from_legacy_files(vocab_file, kind, named.get, {**family.converted_defaults, **init_kwargs})


def _read_init_kwargs(name_or_path, find, where, kwargs) -> dict:
    config = hub.load_json(name_or_path, "tokenizer_config.json", required=False, **where) or {}
    init_kwargs = {k: v for k, v in config.items() if k not in ("auto_map", "init_inputs", "tokenizer_file")}
    template_file = find("chat_template.jinja")
    if template_file is not None:
        with open(template_file, encoding="utf-8") as f:
            init_kwargs["chat_template"] = f.read()
    if not init_kwargs.get("tokenizer_class") and not kwargs.get("tokenizer_class"):
        model_config = hub.load_json(name_or_path, "config.json", required=False, **where) or {}
        init_kwargs["tokenizer_class"] = (model_config.get("tokenizer_class")
                                          or MODEL_TYPE_FAMILIES.get(model_config.get("model_type")))
    init_kwargs.update(kwargs)
    init_kwargs["name_or_path"] = str(name_or_path)
    if "added_tokens_decoder" not in init_kwargs:
        _merge_legacy_special_tokens(init_kwargs, find, kwargs)
    return init_kwargs


def _merge_legacy_special_tokens(init_kwargs: dict, find, explicit: dict) -> None:
    """Folders saved before added_tokens_decoder existed keep special tokens in special_tokens_map.json and
    added tokens in added_tokens.json."""
    path = find("special_tokens_map.json")
    if path is not None:
        for key, value in _load(path).items():
            if explicit.get(key):
                continue
            if key == "additional_special_tokens" and isinstance(value, list):
                current = init_kwargs.get(key) or []
                value = current + [t for t in value if t not in current]
            elif isinstance(value, dict):
                value = {**value, "special": True}
            init_kwargs[key] = value
    path = find("added_tokens.json")
    if path is not None:
        special = {str(as_added_token(init_kwargs[k])) for k in SPECIAL_TOKENS if init_kwargs.get(k)}
        special |= {str(as_added_token(t)) for t in init_kwargs.get("additional_special_tokens") or []}
        init_kwargs["added_tokens_decoder"] = {
            int(index): {"content": content, "lstrip": False, "rstrip": False, "normalized": content not in special,
                         "special": content in special}
            for content, index in _load(path).items()}


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None


def _guess_kind(find) -> str | None:
    for kind, files in LEGACY_FILES.items():
        if kind == "spm" and any(find(f) for f in files):
            return kind
        if all(find(f) for f in files):
            return kind
    return None


def _from_legacy_files(name_or_path, kind: str, find, init_kwargs: dict) -> Tokenizer:
    family = family_of(init_kwargs.get("tokenizer_class"))
    options = {**family.defaults, **init_kwargs}

    def need(*names):
        paths = [find(n) for n in names]
        if any(p is None for p in paths):
            family = family_name(init_kwargs.get("tokenizer_class"))
            raise FileNotFoundError(f"{str(name_or_path)!r} has no {' or '.join(names)}: a "
                                    f"{family} needs it without tokenizer.json")
        return paths

    if kind == "wordpiece":
        backend = converters.wordpiece(
            *need("vocab.txt"), unk_token=as_added_token(options.get("unk_token")),
            do_lower_case=options.get("do_lower_case", True), strip_accents=options.get("strip_accents"),
            tokenize_chinese_chars=options.get("tokenize_chinese_chars", True))
    elif kind == "bpe":
        backend = converters.byte_level_bpe(*need("vocab.json", "merges.txt"),
                                            add_prefix_space=options.get("add_prefix_space", False))
    elif kind == "spm":
        model_file = next((p for p in map(find, LEGACY_FILES["spm"]) if p), None)
        if model_file is None:
            need(*LEGACY_FILES["spm"])
        backend = converters.sentencepiece(
            model_file, _spm_recipe(family_name(options.get("tokenizer_class")), options),
            keep_accents=options.get("keep_accents", False), do_lower_case=options.get("do_lower_case", False),
            add_prefix_space=options.get("add_prefix_space", True) is not False,
            legacy=options.get("legacy", True) is not False)
        init_kwargs.setdefault("vocab_file", model_file)
    elif kind in ("marian", "m2m100"):
        backend, target = _vocab_json_backends(kind, need, options)
        if target is not None:
            init_kwargs["target_tokenizer_object"] = target
    else:
        raise ValueError(f"unknown tokenizer file kind {kind!r}")
    tokenizer = Tokenizer(backend, **init_kwargs)
    post_processor = _post_processor(tokenizer)
    if post_processor is not None:
        for side in {id(backend): backend, id(init_kwargs.get("target_tokenizer_object")): init_kwargs.get(
                "target_tokenizer_object")}.values():
            if side is not None:
                side.post_processor = post_processor
    return tokenizer


def _vocab_json_backends(kind: str, need, options: dict):
    """Marian (source.spm, target.spm, vocab.json [+ target_vocab.json]) and M2M100 (one spm, vocab.json)."""
    unk = str(as_added_token(options.get("unk_token")))
    if kind == "m2m100":
        model_file, vocab_file = need("sentencepiece.bpe.model", "vocab.json")
        vocab = _load(vocab_file)
        codes = [code for code in family_of("M2M100Tokenizer").language_codes if code not in vocab]
        vocab.update({code: len(vocab) + i for i, code in enumerate(codes)})  # ids after vocab.json, as transformers
        return converters.sentencepiece_with_vocab(model_file, vocab, unk), None
    source_file, target_file, vocab_file = need("source.spm", "target.spm", "vocab.json")
    vocab = _load(vocab_file)
    target_vocab = _load(need("target_vocab.json")[0]) if options.get("separate_vocabs") else vocab
    source = converters.sentencepiece_with_vocab(source_file, vocab, unk)
    target = converters.sentencepiece_with_vocab(target_file, target_vocab, unk)
    # ">>fr<<" target-language tokens lead the text of multilingual models; SentencePiece must not split them
    for side in (source, target):
        side.add_tokens([AddedToken(t, normalized=False) for t in vocab if t.startswith(">>") and t.endswith("<<")])
    return source, target


def _spm_recipe(family: str, options: dict) -> converters.SpmRecipe:
    if family == "AlbertTokenizer":
        return converters.SpmRecipe(albert=True)
    if family == "DebertaV2Tokenizer":
        return converters.SpmRecipe(deberta=True, split_by_punct=bool(options.get("split_by_punct", False)))
    if family == "T5Tokenizer":
        extra_ids = options.get("extra_ids", 100) or 0
        return converters.SpmRecipe(vocab_tail=tuple(f"<extra_id_{i}>" for i in range(extra_ids - 1, -1, -1)))
    if family in ("XLMRobertaTokenizer", "MBartTokenizer", "MBart50Tokenizer"):
        codes = family_of(family).language_codes
        return converters.SpmRecipe(vocab_head=FAIRSEQ_HEAD, vocab_tail=codes + ("<mask>",), unk_id=3)
    return converters.SpmRecipe()


def _post_processor(tok: Tokenizer):
    """The special-token framing each transformers converter writes (needs the ids, so runs after set-up)."""
    family = tok.family
    if family in ("BertTokenizer", "ElectraTokenizer", "DistilBertTokenizer", "AlbertTokenizer", "DebertaV2Tokenizer"):
        cls, sep = ("[CLS]", "[SEP]") if family in ("AlbertTokenizer", "DebertaV2Tokenizer") else (tok.cls_token,
                                                                                                    tok.sep_token)
        return processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, tok.convert_tokens_to_ids(cls)), (sep, tok.convert_tokens_to_ids(sep))])
    if family in ("RobertaTokenizer", "BartTokenizer", "LongformerTokenizer"):
        return processors.RobertaProcessing(
            sep=(tok.sep_token, tok.sep_token_id), cls=(tok.cls_token, tok.cls_token_id),
            add_prefix_space=tok.add_prefix_space, trim_offsets=tok.options.get("trim_offsets", True))
    if family == "GPT2Tokenizer" and tok.options.get("add_bos_token"):
        bos = (tok.bos_token, tok.bos_token_id)
        return processors.TemplateProcessing(single=f"{bos[0]}:0 $A:0", pair=f"{bos[0]}:0 $A:0 $B:1",
                                             special_tokens=[bos])
    if family == "GPT2Tokenizer":
        return processors.ByteLevel(trim_offsets=False)
    if family == "XLMRobertaTokenizer":
        return _template(tok, ["<s>", "$A", "</s>"], ["<s>", "$A", "</s>", "</s>", "$B", "</s>"])
    if family == "T5Tokenizer":
        return _template(tok, ["$A", "</s>"], ["$A", "</s>", "$B", "</s>"])
    if family == "MarianTokenizer":
        return _template(tok, ["$A", "</s>"], ["$A", "$B", "</s>"])
    return None


def _template(tok: Tokenizer, single: list[str], pair: list[str]):
    names = sorted({piece for piece in single + pair if not piece.startswith("$")})
    return processors.TemplateProcessing(single=single, pair=pair,
                                         special_tokens=[(n, tok.convert_tokens_to_ids(n)) for n in names])


# ---------------------------------------------------------------- saving
def save_tokenizer(tok: Tokenizer, save_directory) -> tuple[str, ...]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (transformers' fast layout)."""
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise ValueError(f"save_pretrained needs a folder; {save_directory!r} is a file")
    os.makedirs(save_directory, exist_ok=True)
    tok.backend_tokenizer.no_truncation()
    tok.backend_tokenizer.no_padding()
    paths = [os.path.join(save_directory, name)
             for name in ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")]
    config = {k: v for k, v in tok.options.items() if k not in ("vocab_file", "merges_file")}
    config.update({key: str(value) for key, value in tok.special_tokens_map_extended.items()
                   if key != "additional_special_tokens"})
    config.update(
        added_tokens_decoder={str(i): _serialize(t) for i, t in sorted(tok.added_tokens_decoder.items())},
        additional_special_tokens=tok.additional_special_tokens,
        clean_up_tokenization_spaces=tok.clean_up_tokenization_spaces, model_max_length=tok.model_max_length,
        padding_side=tok.padding_side, truncation_side=tok.truncation_side, model_input_names=tok.model_input_names,
        split_special_tokens=tok.split_special_tokens,  # transformers writes the class name without "Fast"
        tokenizer_class=tok.family if tok.family != "PreTrainedTokenizer" else "PreTrainedTokenizerFast")
    if tok.chat_template is not None:
        config["chat_template"] = tok.chat_template
    with open(paths[0], "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False, sort_keys=True)
    with open(paths[1], "w", encoding="utf-8") as f:
        json.dump({key: ([_serialize(as_added_token(t)) if not isinstance(t, str) else t for t in value]
                         if isinstance(value, list) else
                         (value if isinstance(value, str) else _serialize(value)))
                   for key, value in tok.special_tokens_map_extended.items()}, f, indent=2, ensure_ascii=False)
    tok.backend_tokenizer.save(paths[2])
    return tuple(paths + save_legacy_vocabulary(tok, save_directory))


# the file name each slow SentencePiece class reads (its VOCAB_FILES_NAMES["vocab_file"])
SPM_FILE_NAMES = {"T5Tokenizer": "spiece.model", "AlbertTokenizer": "spiece.model",
                  "XLMRobertaTokenizer": "sentencepiece.bpe.model", "MBartTokenizer": "sentencepiece.bpe.model",
                  "MBart50Tokenizer": "sentencepiece.bpe.model", "M2M100Tokenizer": "sentencepiece.bpe.model",
                  "LlamaTokenizer": "tokenizer.model", "GemmaTokenizer": "tokenizer.model"}


def save_legacy_vocabulary(tok: Tokenizer, save_directory: str) -> list[str]:
    """The files transformers' slow classes read: vocab.txt (WordPiece), vocab.json + merges.txt (byte-level BPE),
    or a copy of the SentencePiece model the tokenizer was built from. Returns the paths written."""
    state = json.loads(tok.backend_tokenizer.to_str())
    model = state.get("model") or {}
    vocab = tok.backend_tokenizer.get_vocab(with_added_tokens=False)
    by_id = sorted(vocab, key=vocab.get)
    if model.get("type") == "WordPiece":
        path = os.path.join(save_directory, "vocab.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in by_id)
        return [path]
    if model.get("type") == "BPE" and "ByteLevel" in json.dumps(state.get("pre_tokenizer")):
        paths = [os.path.join(save_directory, name) for name in ("vocab.json", "merges.txt")]
        with open(paths[0], "w", encoding="utf-8") as f:
            json.dump({token: vocab[token] for token in by_id}, f, ensure_ascii=False)
        merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges") or []]
        with open(paths[1], "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(merge + "\n" for merge in merges))
        return paths
    source = tok.options.get("vocab_file")
    if isinstance(source, str) and source.endswith(".model") and os.path.isfile(source):
        path = os.path.join(save_directory, SPM_FILE_NAMES.get(tok.family, os.path.basename(source)))
        if os.path.abspath(path) != os.path.abspath(source):
            shutil.copyfile(source, path)
        return [path]
    return []


def _serialize(token) -> dict:
    return {"content": token.content, "lstrip": token.lstrip, "normalized": token.normalized,
            "rstrip": token.rstrip, "single_word": token.single_word, "special": token.special}
