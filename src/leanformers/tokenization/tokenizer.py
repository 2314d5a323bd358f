"""Tokenizer: transformers' fast-tokenizer API over a `tokenizers.Tokenizer` backend.

The backend does the real work (normalize, split, model, special tokens, truncation, padding, offsets); this class
resolves transformers' arguments into backend settings, keeps the special-token attributes, and shapes the output
into a BatchEncoding exactly as `PreTrainedTokenizerFast` does in transformers 4.57.
"""
from __future__ import annotations

import json

from collections.abc import Mapping

from tokenizers import AddedToken
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import processors

from .encoding import BatchEncoding
from .families import family_name, family_of

VERY_LARGE_INTEGER = int(1e30)  # "no maximum length", as transformers stores it
LARGE_INTEGER = int(1e20)
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
PADDINGS = ("longest", "max_length", "do_not_pad")
TRUNCATIONS = ("longest_first", "only_first", "only_second", "do_not_truncate")


def as_added_token(value):
    """tokenizer_config.json stores special tokens as strings or as serialized AddedToken dicts."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "__type"}
        return AddedToken(**value)
    return value


class Tokenizer:
    def __init__(self, tokenizer_object: BackendTokenizer, **init_kwargs):
        if not isinstance(tokenizer_object, BackendTokenizer):
            raise TypeError(f"tokenizer_object must be a tokenizers.Tokenizer, not {type(tokenizer_object).__name__}")
        target = init_kwargs.pop("target_tokenizer_object", None)
        init_kwargs = {**_saved_backend_settings(tokenizer_object), **init_kwargs}
        self._tokenizer = self._source_tokenizer = tokenizer_object
        self._target_tokenizer = target  # Marian: text_target is split by the target SentencePiece model
        self.family = family_name(init_kwargs.get("tokenizer_class"))
        family = family_of(self.family)
        kwargs = {**family.defaults, **{k: v for k, v in init_kwargs.items() if k not in ("tokenizer_class",)}}
        self.init_kwargs = dict(init_kwargs)
        self.name_or_path = str(kwargs.pop("name_or_path", ""))
        self.model_input_names = list(kwargs.pop("model_input_names", None) or family.model_input_names)
        self.model_max_length = kwargs.pop("model_max_length", None) or VERY_LARGE_INTEGER
        self.padding_side = kwargs.pop("padding_side", "right")
        self.truncation_side = kwargs.pop("truncation_side", "right")
        for name, side in (("padding_side", self.padding_side), ("truncation_side", self.truncation_side)):
            if side not in ("left", "right"):
                raise ValueError(f"{name} must be 'left' or 'right', not {side!r}")
        self.clean_up_tokenization_spaces = bool(kwargs.pop("clean_up_tokenization_spaces", False))
        self.split_special_tokens = bool(kwargs.pop("split_special_tokens", False))
        self.chat_template = kwargs.pop("chat_template", None)
        self.add_prefix_space = kwargs.get("add_prefix_space", False)
        self._words_need_prefix_space = family.words_need_prefix_space
        self.options = kwargs  # the remaining tokenizer_config keys (do_lower_case, src_lang, ...)

        self._special = {}
        for key in SPECIAL_TOKENS:
            self._special[key] = as_added_token(kwargs.pop(key, None))
        additional = [as_added_token(t) for t in (kwargs.pop("additional_special_tokens", None) or [])]
        extra_ids = kwargs.get("extra_ids", 0) or 0
        if extra_ids and not any("<extra_id_" in str(t) for t in additional):
            additional += [f"<extra_id_{i}>" for i in range(extra_ids)]  # T5's sentinels
        if family.language_codes_special:
            additional += [code for code in family.language_codes if code not in map(str, additional)]
        self._special["additional_special_tokens"] = additional
        added_tokens_decoder = kwargs.pop("added_tokens_decoder", None) or {}
        for backend in filter(None, (self._source_tokenizer, self._target_tokenizer)):
            self._register_added_tokens(backend, added_tokens_decoder)
        self._tokenizer.encode_special_tokens = self.split_special_tokens
        self._fix_backend(family)

    # ---------------------------------------------------------------- set-up
    def _register_added_tokens(self, backend: BackendTokenizer, added_tokens_decoder: dict) -> None:
        """Add the config's added tokens and every special token to the backend, as transformers' __init__ does."""
        present = {repr(t) for t in backend.get_added_tokens_decoder().values()}
        tokens_to_add = [as_added_token(t) for _, t in sorted(added_tokens_decoder.items(), key=lambda x: int(x[0]))]
        tokens_to_add = [t for t in tokens_to_add if repr(t) not in present]
        known = [t.content for t in backend.get_added_tokens_decoder().values()] + [str(t) for t in tokens_to_add]
        tokens_to_add += [t for t in self.all_special_tokens_extended if t not in known and t not in tokens_to_add]
        special = set(self.all_special_tokens)
        tokens = []
        for token in tokens_to_add:
            if isinstance(token, str):
                token = AddedToken(token, special=token in special)
            else:
                token.special = token.special or token.content in special
            tokens.append(token)
        if tokens:
            backend.add_tokens(tokens)

    def _fix_backend(self, family) -> None:
        """Options in tokenizer_config.json that transformers' classes write into the backend after loading."""
        options = self.options
        normalizer = self._tokenizer.normalizer
        if self.family in ("BertTokenizer", "ElectraTokenizer", "DistilBertTokenizer") and normalizer is not None:
            state = json.loads(normalizer.__getstate__())
            wanted = {"lowercase": options.get("do_lower_case", True), "strip_accents": options.get("strip_accents"),
                      "handle_chinese_chars": options.get("tokenize_chinese_chars", True)}
            if state.get("type") == "BertNormalizer" and any(state.get(k, v) != v for k, v in wanted.items()):
                from tokenizers import normalizers

                self._tokenizer.normalizer = normalizers.BertNormalizer(
                    clean_text=state.get("clean_text", True), **wanted)
        if family.words_need_prefix_space:
            self._set_component_options("pre_tokenizer", add_prefix_space=self.add_prefix_space)
        if family.words_need_prefix_space and "trim_offsets" in options:
            self._set_component_options("post_processor", add_prefix_space=self.add_prefix_space,
                                        trim_offsets=options["trim_offsets"])
        if self.family in ("LlamaTokenizer", "GemmaTokenizer"):
            self._update_bos_eos_template()
        if family.language_codes:
            self.src_lang = options.get("src_lang") or family.default_src_lang

    def _set_component_options(self, component: str, **wanted) -> None:
        """Rewrite a pre-tokenizer / post-processor whose saved options differ from the configured ones."""
        instance = getattr(self._tokenizer, component, None)
        if instance is None:
            return
        state = json.loads(instance.__getstate__())
        if all(state.get(key, value) == value for key, value in wanted.items()):
            return
        from tokenizers import pre_tokenizers

        module = pre_tokenizers if component == "pre_tokenizer" else processors
        kind = state.pop("type")
        state.update({key: value for key, value in wanted.items() if key in state})
        for key in ("sep", "cls"):
            if key in state:
                state[key] = tuple(state[key])
        if kind == "ByteLevel" and component == "pre_tokenizer":
            state = {k: v for k, v in state.items() if k in ("add_prefix_space", "trim_offsets", "use_regex")}
        setattr(self._tokenizer, component, getattr(module, kind)(**state))

    def _update_bos_eos_template(self) -> None:
        add_bos = self.options.get("add_bos_token", True)
        add_eos = self.options.get("add_eos_token", False)
        bos, eos = self.bos_token, self.eos_token
        if (add_bos and bos is None) or (add_eos and eos is None):
            raise ValueError("add_bos_token/add_eos_token is set but the tokenizer has no bos_token/eos_token")
        single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
        pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
        special = ([(bos, self.bos_token_id)] if add_bos else []) + ([(eos, self.eos_token_id)] if add_eos else [])
        self._tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                                       special_tokens=special)

    # ---------------------------------------------------------------- language codes (mBART, mBART-50)
    @property
    def src_lang(self):
        return self.options.get("src_lang")

    @src_lang.setter
    def src_lang(self, lang: str) -> None:
        self.options["src_lang"] = lang
        self._set_language_template(lang)

    @property
    def tgt_lang(self):
        return self.options.get("tgt_lang")

    @tgt_lang.setter
    def tgt_lang(self, lang: str) -> None:
        self.options["tgt_lang"] = lang

    def _set_language_template(self, lang: str | None) -> None:
        family = family_of(self.family)
        if not family.language_codes:
            return
        token = family.language_token.format(lang)
        if token not in family.language_codes and self._tokenizer.token_to_id(token) is None:
            known = ", ".join(family.language_codes)
            raise ValueError(f"unknown language code {lang!r}; this tokenizer knows {known}")
        code = (token, self.convert_tokens_to_ids(token))
        eos = (self.eos_token, self.eos_token_id)
        prefix, suffix = ([code], [eos]) if family.language_code_first else ([], [eos, code])
        names = [t for t, _ in prefix], [t for t, _ in suffix]
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=names[0] + ["$A"] + names[1], pair=names[0] + ["$A", "$B"] + names[1],
            special_tokens=prefix + suffix)

    # ---------------------------------------------------------------- special tokens
    @property
    def special_tokens_map_extended(self) -> dict:
        return {key: value for key, value in self._special.items() if value}

    @property
    def special_tokens_map(self) -> dict:
        return {key: ([str(t) for t in value] if isinstance(value, list) else str(value))
                for key, value in self.special_tokens_map_extended.items()}

    @property
    def all_special_tokens_extended(self) -> list:
        tokens, seen = [], set()
        for value in self.special_tokens_map_extended.values():
            for token in value if isinstance(value, list) else [value]:
                if str(token) not in seen:
                    seen.add(str(token))
                    tokens.append(token)
        return tokens

    @property
    def all_special_tokens(self) -> list[str]:
        return [str(t) for t in self.all_special_tokens_extended]

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def additional_special_tokens(self) -> list[str]:
        return [str(t) for t in self._special["additional_special_tokens"]]

    @additional_special_tokens.setter
    def additional_special_tokens(self, value) -> None:
        self._special["additional_special_tokens"] = list(value or [])

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.additional_special_tokens)

    @property
    def pad_token_type_id(self) -> int:
        return 0

    def add_special_tokens(self, special_tokens_dict: dict, replace_additional_special_tokens: bool = True) -> int:
        tokens = []
        for key, value in special_tokens_dict.items():
            if key not in SPECIAL_TOKENS and key != "additional_special_tokens":
                raise ValueError(f"{key!r} is not a special token attribute; use one of {SPECIAL_TOKENS}")
            if key == "additional_special_tokens":
                value = [as_added_token(t) for t in value]
                old = [] if replace_additional_special_tokens else self._special[key]
                self._special[key] = old + [t for t in value if str(t) not in map(str, old)]
                tokens += value
            else:
                self._special[key] = as_added_token(value)
                tokens.append(self._special[key])
        return self.add_tokens(tokens, special_tokens=True)

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        if special_tokens:
            return self._tokenizer.add_special_tokens(list(new_tokens))
        return self._tokenizer.add_tokens(list(new_tokens))

    # ---------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    vocab = property(get_vocab)

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return self._tokenizer.get_added_tokens_decoder()

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: i for i, t in sorted(self.added_tokens_decoder.items())}

    @property
    def backend_tokenizer(self) -> BackendTokenizer:
        return self._tokenizer

    @property
    def is_fast(self) -> bool:
        return True

    def convert_tokens_to_ids(self, tokens):
        if tokens is None:
            return None
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if index is None and tokens != self.unk_token else index
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        """Frame ids with the post-processor's special tokens: encode a one-word probe and put the ids in its place."""
        backend = self._tokenizer
        backend.no_truncation()
        backend.no_padding()
        probe = backend.encode("a", None if token_ids_1 is None else "a", add_special_tokens=True)
        framed, previous = [], None
        for token_id, sequence in zip(probe.ids, probe.sequence_ids):
            if sequence is None:
                framed.append(token_id)
            elif sequence != previous:
                framed.extend(token_ids_0 if sequence == 0 else token_ids_1)
            previous = sequence
        return framed

    # ---------------------------------------------------------------- encoding
    def __call__(self, text=None, text_pair=None, *, text_target=None, text_pair_target=None,
                 add_special_tokens: bool = True, padding=False, truncation=None, max_length: int | None = None,
                 stride: int = 0, is_split_into_words: bool = False, pad_to_multiple_of: int | None = None,
                 padding_side: str | None = None, return_tensors=None, return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None, return_overflowing_tokens: bool = False,
                 return_special_tokens_mask: bool = False, return_offsets_mapping: bool = False,
                 return_length: bool = False, split_special_tokens: bool | None = None, verbose: bool = True,
                 **kwargs) -> BatchEncoding:
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) for the tokenizer call: {', '.join(sorted(kwargs))}")
        if text is None and text_target is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        options = dict(add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                       max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                       pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side, return_tensors=return_tensors,
                       return_token_type_ids=return_token_type_ids, return_attention_mask=return_attention_mask,
                       return_overflowing_tokens=return_overflowing_tokens,
                       return_special_tokens_mask=return_special_tokens_mask,
                       return_offsets_mapping=return_offsets_mapping, return_length=return_length,
                       split_special_tokens=self.split_special_tokens if split_special_tokens is None
                       else split_special_tokens)
        encodings = None
        if text is not None:
            self._switch_language(target=False)
            encodings = self._call_one(text, text_pair, **options)
        if text_target is not None:
            self._switch_language(target=True)
            try:
                targets = self._call_one(text_target, text_pair_target, **options)
            finally:
                self._switch_language(target=False)
            if encodings is None:
                return targets
            encodings["labels"] = targets["input_ids"]
        return encodings

    def _switch_language(self, target: bool) -> None:
        if self._target_tokenizer is not None:
            self._tokenizer = self._target_tokenizer if target else self._source_tokenizer
        if family_of(self.family).language_codes:
            self._set_language_template(self.tgt_lang if target else self.src_lang)

    def _call_one(self, text, text_pair, *, is_split_into_words, return_tensors, return_overflowing_tokens, **options):
        for name, value in (("text", text), ("text_pair", text_pair)):
            if value is not None and not _is_valid_text_input(value):
                raise ValueError(f"`{name}` must be a str (one example), a list of str (a batch, or one pretokenized "
                                 f"example) or a list of lists of str (pretokenized batch), not {_describe(value)}")
        if is_split_into_words:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if batched:
            if isinstance(text_pair, str):
                raise TypeError("when tokenizing batches of text, `text_pair` must be a list or tuple with the same "
                                "length as `text`.")
            if text_pair is not None and len(text) != len(text_pair):
                raise ValueError(f"batch length of `text`: {len(text)} does not match batch length of "
                                 f"`text_pair`: {len(text_pair)}.")
            inputs = list(zip(text, text_pair)) if text_pair is not None else list(text)
        else:
            inputs = [(text, text_pair)] if text_pair else [text]
        output = self._encode_batch(inputs, is_split_into_words=is_split_into_words, return_tensors=return_tensors,
                                    return_overflowing_tokens=return_overflowing_tokens, **options)
        if not batched and return_tensors is None and not return_overflowing_tokens:
            # one example: drop the batch axis
            output = BatchEncoding({key: value[0] if value and isinstance(value[0], list) else value
                                    for key, value in output.items()}, output.encodings)
        return output

    def _encode_batch(self, inputs, *, add_special_tokens, padding, truncation, max_length, stride,
                      is_split_into_words, pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids,
                      return_attention_mask, return_overflowing_tokens, return_special_tokens_mask,
                      return_offsets_mapping, return_length, split_special_tokens) -> BatchEncoding:
        if is_split_into_words and self._words_need_prefix_space and not self.add_prefix_space:
            raise ValueError(f"this {self.family} tokenizer needs add_prefix_space=True (pass it to from_pretrained) "
                             "to take pretokenized inputs (is_split_into_words=True)")
        padding, truncation, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        self._configure_backend(padding, truncation, max_length, stride, pad_to_multiple_of, padding_side)
        self._tokenizer.encode_special_tokens = split_special_tokens
        try:
            encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                     is_pretokenized=is_split_into_words)
        except BaseException as err:  # the backend panics (a BaseException) where transformers lets it crash
            if type(err).__name__ != "PanicException":
                raise
            raise ValueError(f"cannot encode with max_length={max_length}, stride={stride}: "
                             f"{str(err).split(' (note')[0]}") from None
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        fields = {"input_ids": lambda e: e.ids}
        if return_token_type_ids:
            fields["token_type_ids"] = lambda e: e.type_ids
        if return_attention_mask:
            fields["attention_mask"] = lambda e: e.attention_mask
        if return_special_tokens_mask:
            fields["special_tokens_mask"] = lambda e: e.special_tokens_mask
        if return_offsets_mapping:
            fields["offset_mapping"] = lambda e: e.offsets
        if return_length:
            fields["length"] = lambda e: len(e.ids)

        flat, sample_of = [], []  # overflowing windows become extra rows, mapped back to their example
        for index, encoding in enumerate(encodings):
            windows = [encoding] + (encoding.overflowing if return_overflowing_tokens else [])
            flat += windows
            sample_of += [index] * len(windows)
        data = {key: [get(e) for e in flat] for key, get in fields.items()}
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_of
        return BatchEncoding(data, flat, tensor_type=return_tensors)

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of):
        """transformers' rules for turning padding/truncation/max_length arguments into strategies."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # a bare max_length means truncation, as in transformers
        padding = _strategy("padding", padding, PADDINGS, "longest")
        truncation = _strategy("truncation", truncation, TRUNCATIONS, "longest_first")
        if max_length is None:
            if padding == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    padding = "do_not_pad"  # transformers warns and does not pad
                else:
                    max_length = self.model_max_length
            if truncation != "do_not_truncate":
                if self.model_max_length > LARGE_INTEGER:
                    truncation = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if padding != "do_not_pad" and (self.pad_token is None or (self.pad_token_id or 0) < 0):
            raise ValueError("Asking to pad but the tokenizer does not have a padding token. Set one with "
                             "`tokenizer.pad_token = tokenizer.eos_token` or "
                             "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")
        if (truncation != "do_not_truncate" and padding != "do_not_pad" and pad_to_multiple_of is not None
                and max_length is not None and max_length % pad_to_multiple_of != 0):
            raise ValueError(f"Truncation and padding are both activated but truncation length ({max_length}) is "
                             f"not a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return padding, truncation, max_length

    def _configure_backend(self, padding, truncation, max_length, stride, pad_to_multiple_of, padding_side):
        backend = self._tokenizer
        if truncation == "do_not_truncate":
            backend.no_truncation()
        else:
            try:
                backend.enable_truncation(max_length, stride=stride, strategy=truncation,
                                          direction=self.truncation_side)
            except Exception as err:
                raise ValueError(f"invalid truncation settings (max_length={max_length}, stride={stride}): "
                                 f"{err}") from None
        if padding == "do_not_pad":
            backend.no_padding()
            return
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {side!r}")
        backend.enable_padding(length=max_length if padding == "max_length" else None, direction=side,
                               pad_id=self.pad_token_id, pad_token=self.pad_token, pad_type_id=self.pad_token_type_id,
                               pad_to_multiple_of=pad_to_multiple_of)

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
               max_length: int | None = None, stride: int = 0, return_tensors=None, **kwargs):
        encoded = self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                       max_length=max_length, stride=stride, return_tensors=return_tensors, **kwargs)
        return encoded["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    # ---------------------------------------------------------------- decoding
    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               **kwargs) -> str:
        token_ids = _to_py(token_ids)
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        separator = family_of(self.family).special_token_separator
        if separator is None:
            text = self._tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)
        else:
            text = self._decode_apart(token_ids, skip_special_tokens, separator)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def _decode_apart(self, token_ids: list[int], skip_special_tokens: bool, separator: str) -> str:
        """Marian/M2M100 (slow in transformers): decode runs of pieces, keep special tokens apart, strip."""
        backend = self._target_tokenizer or self._tokenizer  # Marian decodes translations with its target side
        special = set(self.all_special_tokens)
        text, run = "", []
        for token in self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens):
            if token in special:
                text += backend.decoder.decode(run) + token + separator
                run = []
            else:
                run.append(token)
        return (text + backend.decoder.decode(run)).strip()

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, **kwargs) -> list[str]:
        return [self.decode(seq, skip_special_tokens=skip_special_tokens,
                            clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
                for seq in _to_py(sequences)]

    # ---------------------------------------------------------------- padding of encoded features
    def pad(self, encoded_inputs, padding=True, max_length: int | None = None, pad_to_multiple_of: int | None = None,
            padding_side: str | None = None, return_attention_mask: bool | None = None,
            return_tensors=None, verbose: bool = True) -> BatchEncoding:
        """Pad already-encoded features (a dict of lists, or a list of dicts) the way transformers' pad() does."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        encoded_inputs = {key: _to_py(value) for key, value in dict(encoded_inputs).items()}
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise ValueError(f"pad() needs {main!r} in the features; got {list(encoded_inputs)}")
        if not encoded_inputs[main]:
            return BatchEncoding(encoded_inputs, tensor_type=return_tensors)
        padding, _, max_length = self._strategies(padding, False, max_length, pad_to_multiple_of)
        single = not isinstance(encoded_inputs[main][0], (list, tuple))
        rows = [encoded_inputs] if single else [{k: v[i] for k, v in encoded_inputs.items()}
                                                for i in range(len(encoded_inputs[main]))]
        if padding == "longest":
            max_length = max(len(row[main]) for row in rows)
            padding = "max_length"
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        rows = [self._pad_row(row, padding, max_length, pad_to_multiple_of, padding_side or self.padding_side,
                              return_attention_mask) for row in rows]
        data = rows[0] if single else {key: [row[key] for row in rows] for key in rows[0]}
        return BatchEncoding(data, tensor_type=return_tensors)

    def _pad_row(self, row, padding, max_length, pad_to_multiple_of, side, return_attention_mask):
        ids = row[self.model_input_names[0]]
        if padding == "max_length" and max_length is not None and pad_to_multiple_of:
            max_length = -(-max_length // pad_to_multiple_of) * pad_to_multiple_of
        missing = max(0, (max_length or 0) - len(ids)) if padding == "max_length" else 0
        row = dict(row)
        if return_attention_mask and "attention_mask" not in row:
            row["attention_mask"] = [1] * len(ids)
        fills = {self.model_input_names[0]: self.pad_token_id, "token_type_ids": self.pad_token_type_id,
                 "attention_mask": 0, "special_tokens_mask": 1}
        for key, fill in fills.items():
            if key in row and missing:
                pad = [fill] * missing
                row[key] = pad + list(row[key]) if side == "left" else list(row[key]) + pad
        return row

    # ---------------------------------------------------------------- saving
    def save_pretrained(self, save_directory, **kwargs) -> tuple[str, ...]:
        from .files import save_tokenizer

        return save_tokenizer(self, save_directory)

    def apply_chat_template(self, conversation, tools=None, documents=None, chat_template: str | None = None,
                            add_generation_prompt: bool = False, continue_final_message: bool = False,
                            tokenize: bool = True, padding=False, truncation: bool = False,
                            max_length: int | None = None, return_tensors=None, return_dict: bool = False,
                            return_assistant_tokens_mask: bool = False, **template_kwargs):
        from .chat import apply_chat_template

        return apply_chat_template(self, conversation, tools=tools, documents=documents, chat_template=chat_template,
                                   add_generation_prompt=add_generation_prompt,
                                   continue_final_message=continue_final_message, tokenize=tokenize,
                                   padding=padding, truncation=truncation, max_length=max_length,
                                   return_tensors=return_tensors, return_dict=return_dict, **template_kwargs)

    def __repr__(self) -> str:
        return (f"Tokenizer(name_or_path={self.name_or_path!r}, family={self.family!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"special_tokens={self.special_tokens_map})")


def _special_token_property(key: str):
    def get(self):
        value = self._special.get(key)
        return None if value is None else str(value)

    def set_(self, value):
        if value is not None and not isinstance(value, (str, AddedToken)):
            raise ValueError(f"{key} must be a str or AddedToken, not {type(value).__name__}")
        self._special[key] = value

    def get_id(self):
        return self.convert_tokens_to_ids(get(self))

    def set_id(self, value):
        set_(self, None if value is None else self.convert_ids_to_tokens(value))

    return property(get, set_), property(get_id, set_id)


for _key in SPECIAL_TOKENS:
    _token, _token_id = _special_token_property(_key)
    setattr(Tokenizer, _key, _token)
    setattr(Tokenizer, f"{_key}_id", _token_id)


def _saved_backend_settings(backend: BackendTokenizer) -> dict:
    """A tokenizer.json saved with padding/truncation on supplies pad_token and the sides, below tokenizer_config.json
    and above the class defaults (transformers' PreTrainedTokenizerFast.__init__)."""
    settings = {}
    if backend.truncation is not None:
        settings["truncation_side"] = backend.truncation.get("direction", "right")
    if backend.padding is not None:
        settings.update(pad_token=backend.padding.get("pad_token"), padding_side=backend.padding.get("direction"))
    return {key: value for key, value in settings.items() if value is not None}


def _strategy(name: str, value, choices: tuple[str, ...], true_value: str) -> str:
    if value is True:
        return true_value
    if value is False or value is None:
        return choices[-1]
    value = str(getattr(value, "value", value))
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; use True, False or one of {', '.join(choices)}")
    return value


def _is_valid_text_input(value) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, (list, tuple)):
        return False
    if len(value) == 0 or isinstance(value[0], str):
        return True
    if isinstance(value[0], (list, tuple)):
        return len(value[0]) == 0 or isinstance(value[0][0], str)
    return False


def _describe(value) -> str:
    if isinstance(value, (list, tuple)) and value:
        return f"a {type(value).__name__} of {type(value[0]).__name__}"
    return f"{type(value).__name__} {value!r}"[:80]


def _to_py(value):
    """Tensors and arrays -> plain Python lists/ints (decode and pad take any of them)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_py(v) for v in value]
    return value


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of spaces before punctuation and English contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text
