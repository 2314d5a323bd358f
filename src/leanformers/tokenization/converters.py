"""Legacy vocabulary files -> `tokenizers.Tokenizer` objects, the way transformers' convert_slow_tokenizer builds them.

Each builder takes file paths plus the tokenizer_config-style options and returns a backend tokenizer whose
normalizer, pre-tokenizer, model, post-processor and decoder equal what transformers 4.57 produces for the same
files, so ids and offsets come out identical. SentencePiece `.model` files are read with a small protobuf reader
below, so neither `sentencepiece` nor `protobuf` is needed at run time.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from tokenizers import AddedToken, Regex
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE, Unigram, WordPiece

SPIECE_UNDERLINE = "▁"


# ---------------------------------------------------------------- WordPiece (BERT, DistilBERT, ELECTRA)
def read_wordpiece_vocab(path: str) -> dict[str, int]:
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if tokens and tokens[-1] == "":  # a trailing newline is not a token
        tokens.pop()
    return {token: index for index, token in enumerate(tokens)}


def wordpiece(vocab_file, *, unk_token, do_lower_case=True, strip_accents=None,
              tokenize_chinese_chars=True) -> BackendTokenizer:
    """BERT's WordPiece; the [CLS] ... [SEP] post-processor is set once the special-token ids are known."""
    vocab = read_wordpiece_vocab(vocab_file)
    tokenizer = BackendTokenizer(WordPiece(vocab, unk_token=str(unk_token)))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents,
        lowercase=do_lower_case,
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


# ---------------------------------------------------------------- byte-level BPE (GPT-2, RoBERTa)
def read_merges(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return [tuple(line.split()) for line in lines if line.split()]


def byte_level_bpe(vocab_file, merges_file, *, add_prefix_space=False) -> BackendTokenizer:
    """GPT-2 / RoBERTa byte-level BPE; the family's post-processor is set once the special-token ids are known."""
    with open(vocab_file, encoding="utf-8") as f:
        vocab = json.load(f)
    model = BPE(vocab=vocab, merges=read_merges(merges_file), dropout=None, continuing_subword_prefix="",
                end_of_word_suffix="", fuse_unk=False)
    tokenizer = BackendTokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


# ---------------------------------------------------------------- SentencePiece model files
PIECE_NORMAL, PIECE_UNKNOWN, PIECE_CONTROL, PIECE_USER_DEFINED, PIECE_UNUSED, PIECE_BYTE = 1, 2, 3, 4, 5, 6
MODEL_UNIGRAM, MODEL_BPE = 1, 2


@dataclass
class SpmPiece:
    piece: str
    score: float = 0.0
    type: int = PIECE_NORMAL


@dataclass
class SpmModel:
    """The fields of sentencepiece's ModelProto that the conversion reads."""

    pieces: list[SpmPiece] = field(default_factory=list)
    model_type: int = MODEL_UNIGRAM
    byte_fallback: bool = False
    unk_id: int = 0
    unk_piece: str = "<unk>"
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True

    @property
    def vocab(self) -> dict[str, int]:
        return {p.piece: i for i, p in enumerate(self.pieces)}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """Yield (field number, value) of one protobuf message; value is an int, or bytes for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire_type == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield number, value


def read_spm_model(path: str) -> SpmModel:
    with open(path, "rb") as f:
        data = f.read()
    model = SpmModel()
    try:
        for number, value in _fields(data):
            if number == 1:
                piece = SpmPiece("")
                for n, v in _fields(value):
                    if n == 1:
                        piece.piece = v.decode("utf-8")
                    elif n == 2:
                        piece.score = struct.unpack("<f", v)[0]
                    elif n == 3:
                        piece.type = v
                model.pieces.append(piece)
            elif number == 2:
                _read_trainer_spec(model, value)
            elif number == 3:
                _read_normalizer_spec(model, value)
    except (IndexError, UnicodeDecodeError, ValueError, struct.error) as err:
        raise ValueError(f"{path} is not a valid SentencePiece model: {err}") from None
    if not model.pieces:
        raise ValueError(f"{path} is not a valid SentencePiece model: it holds no pieces")
    return model


def _read_trainer_spec(model: SpmModel, data: bytes) -> None:
    for number, value in _fields(data):
        if number == 3:
            model.model_type = value
        elif number == 35:
            model.byte_fallback = bool(value)
        elif number == 40:
            model.unk_id = value
        elif number == 45:
            model.unk_piece = value.decode("utf-8")


def _read_normalizer_spec(model: SpmModel, data: bytes) -> None:
    for number, value in _fields(data):
        if number == 2:
            model.precompiled_charsmap = bytes(value)
        elif number == 3:
            model.add_dummy_prefix = bool(value)


def bpe_merges_from_scores(vocab: dict[str, int], vocab_scores: list[tuple[str, float]]) -> list[tuple[str, str]]:
    """SentencePiece BPE keeps no merge list: rebuild it from piece scores (transformers' generate_merges)."""
    merges = []
    for merge, score in dict(vocab_scores).items():
        local = [(merge[:i], merge[i:], score) for i in range(1, len(merge))
                 if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges.sort(key=lambda val: (val[2], len(val[0]), len(val[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


@dataclass
class SpmRecipe:
    """How one tokenizer family turns a SentencePiece model into a backend (the Converter subclasses' overrides)."""

    vocab_head: tuple[str, ...] | None = None  # fairseq families replace the first 3 pieces by these (id offset)
    vocab_tail: tuple[str, ...] = ()  # pieces appended after the model's own (language codes, <mask>, extra ids)
    unk_id: int | None = None
    albert: bool = False  # ALBERT's own normalizer and score penalty for pieces with digits and commas
    deberta: bool = False  # DeBERTa-v2's normalizer (lowercase?, strip both sides, runs of spaces -> one space) and
    split_by_punct: bool = False  # pre-tokenizer (punctuation isolated first when split_by_punct)


def sentencepiece(model_file, recipe: SpmRecipe, *, special_pieces=(), keep_accents=False, do_lower_case=False,
                  add_prefix_space=True, legacy=True) -> BackendTokenizer:
    spm = read_spm_model(model_file)
    vocab_scores = [(p.piece, p.score) for p in spm.pieces]
    if recipe.albert:
        vocab_scores = [(piece, score if _number_comma_ok(piece) else score - 100) for piece, score in vocab_scores]
    if recipe.vocab_head is not None:
        vocab_scores = [(piece, 0.0) for piece in recipe.vocab_head] + vocab_scores[3:]
    vocab_scores += [(piece, 0.0) for piece in recipe.vocab_tail]
    unk_id = spm.unk_id if recipe.unk_id is None else recipe.unk_id

    if spm.model_type == MODEL_UNIGRAM:
        tokenizer = BackendTokenizer(Unigram(vocab_scores, unk_id=unk_id, byte_fallback=False))
    elif spm.model_type == MODEL_BPE:
        vocab = {piece: i for i, (piece, _) in enumerate(vocab_scores)}
        merges = bpe_merges_from_scores(spm.vocab, vocab_scores)
        tokenizer = BackendTokenizer(BPE(vocab, merges, unk_token=spm.unk_piece, fuse_unk=True, byte_fallback=False,
                                         dropout=None))
    else:
        raise ValueError(f"{model_file}: SentencePiece model type {spm.model_type} cannot be converted "
                         "(only Unigram and BPE models can)")
    # control pieces are special, user-defined ones are not; both become added tokens
    tokenizer.add_tokens([AddedToken(p.piece, normalized=False,
                                     special=p.type == PIECE_CONTROL or p.piece in special_pieces)
                          for p in spm.pieces if p.type in (PIECE_CONTROL, PIECE_USER_DEFINED)])

    tokenizer.normalizer = (_albert_normalizer(spm, keep_accents, do_lower_case) if recipe.albert
                            else _deberta_normalizer(spm, do_lower_case) if recipe.deberta else _spm_normalizer(spm))
    prepend_scheme = ("always" if legacy else "first") if add_prefix_space else "never"
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=prepend_scheme)
    if recipe.split_by_punct:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Punctuation(behavior="isolated"),
                                                           tokenizer.pre_tokenizer])
    tokenizer.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=prepend_scheme)
    return tokenizer


def sentencepiece_with_vocab(model_file, vocab: dict[str, int], unk_token: str) -> BackendTokenizer:
    """Marian / M2M100: SentencePiece segments, a separate vocab.json numbers the pieces (unknown ones -> unk)."""
    spm = read_spm_model(model_file)
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"the vocab.json next to {model_file} must number its tokens 0..{len(vocab) - 1} without gaps")
    if unk_token not in vocab:
        raise KeyError(f"the vocab.json next to {model_file} has no unk token {unk_token!r}")
    if spm.model_type == MODEL_BPE:
        scored = bpe_merges_from_scores(spm.vocab, [(p.piece, p.score) for p in spm.pieces])
        merges = [(left, right) for left, right in scored
                  if left in vocab and right in vocab and left + right in vocab]
        model = BPE(vocab, merges, unk_token=unk_token, fuse_unk=True, byte_fallback=False, dropout=None)
    elif spm.model_type == MODEL_UNIGRAM:
        # pieces SentencePiece never emits (control, unknown, or absent from the model) must never win the search
        scores = {p.piece: p.score for p in spm.pieces if p.type in (PIECE_NORMAL, PIECE_USER_DEFINED)}
        ordered = sorted(vocab, key=vocab.get)
        model = Unigram([(piece, scores.get(piece, -1e10)) for piece in ordered], unk_id=vocab[unk_token],
                        byte_fallback=False)
    else:
        raise ValueError(f"{model_file}: SentencePiece model type {spm.model_type} cannot be converted")
    tokenizer = BackendTokenizer(model)
    tokenizer.normalizer = _spm_exact_normalizer(spm)
    # the normalizer already wrote the dummy prefix: Metaspace would skip it before a "▁" typed in the text
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="never")
    tokenizer.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    return tokenizer


def _number_comma_ok(piece: str) -> bool:
    return len(piece) < 2 or piece[-1] != "," or not piece[-2].isdigit()


def _spm_normalizer(spm: SpmModel):
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), SPIECE_UNDERLINE)]
    if spm.precompiled_charsmap:
        steps.insert(0, normalizers.Precompiled(spm.precompiled_charsmap))
    return normalizers.Sequence(steps)


def _deberta_normalizer(spm: SpmModel, do_lower_case: bool):  # transformers' DebertaV2Converter.normalizer
    steps = ([normalizers.Lowercase()] if do_lower_case else []) + [normalizers.Strip()]
    if spm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spm.precompiled_charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def _spm_exact_normalizer(spm: SpmModel):
    """What SentencePiece itself does (Marian and M2M100 are slow-only in transformers): after the charsmap, strip
    and collapse ASCII spaces only; a lone carriage return is a character to tokenize, not whitespace to drop."""
    # SentencePiece strips trailing spaces after writing them as "▁", so a "▁" typed at the end goes too
    steps = [normalizers.Replace(Regex(r"\A +|[ ▁]+\z"), ""), normalizers.Replace(Regex(" {2,}"), " "),
             normalizers.Prepend(SPIECE_UNDERLINE), normalizers.Replace(" ", SPIECE_UNDERLINE)]
    if spm.precompiled_charsmap:
        steps.insert(0, normalizers.Precompiled(spm.precompiled_charsmap))
    return normalizers.Sequence(steps)


def _albert_normalizer(spm: SpmModel, keep_accents: bool, do_lower_case: bool):
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if not keep_accents:
        steps += [normalizers.NFKD(), normalizers.StripAccents()]
    if do_lower_case:
        steps.append(normalizers.Lowercase())
    if spm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spm.precompiled_charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)
