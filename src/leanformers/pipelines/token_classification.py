"""token-classification (ner): a label per token, optionally grouped into entities (transformers 4.57's rules).

aggregation_strategy: "none" (every token), "simple" (adjacent tokens of one entity type), and the word-level
"first" / "average" / "max" (a word's tokens agree on one label first). `start`/`end` are character offsets into
the original text. With `stride=`, a text longer than the model's window runs in overlapping windows (batched
together) and entities seen twice in the overlap are merged.
"""
from __future__ import annotations

import warnings

import numpy as np

from .base import Pipeline, check_text, group_by_item, softmax, windows_from

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"
    heads = ("token_classification",)

    def parameters(self, ignore_labels=None, grouped_entities=None, ignore_subwords=None, aggregation_strategy=None,
                   offset_mapping=None, is_split_into_words=False, stride=None, delimiter=None, **kwargs):
        super().parameters(**kwargs)
        strategy = _strategy(aggregation_strategy, grouped_entities, ignore_subwords)
        if stride is not None:
            if not isinstance(stride, int) or stride < 0:
                raise ValueError(f"stride must be a non-negative int, not {stride!r}")
            if stride >= (self.max_length() or float("inf")):
                raise ValueError("`stride` must be less than `tokenizer.model_max_length` (or even lower if the "
                                 "tokenizer adds special tokens)")
            if strategy == "none":
                raise ValueError('`stride` was provided to process all the text but `aggregation_strategy="none"`, '
                                 "please select another one instead.")
        return {"strategy": strategy, "ignore_labels": ["O"] if ignore_labels is None else list(ignore_labels),
                "offset_mapping": offset_mapping, "is_split_into_words": bool(is_split_into_words),
                "stride": stride, "delimiter": " " if delimiter is None else delimiter}

    def __call__(self, inputs, **kwargs):
        if kwargs.get("is_split_into_words") and isinstance(inputs, (list, tuple)) and inputs \
                and not all(isinstance(words, list) for words in inputs):
            return super().__call__([inputs], **kwargs)  # one pre-split text, answered as a batch of one
        if isinstance(inputs, (list, tuple)) and not inputs:
            raise ValueError("At least one input is required.")
        return super().__call__(inputs, **kwargs)

    # ---------------------------------------------------------------- encode
    def encode(self, items, params):
        offsets = params["offset_mapping"]
        if offsets and isinstance(offsets, list) and isinstance(offsets[0], tuple):
            offsets = [offsets]
        if offsets and len(offsets) != len(items):
            raise ValueError("offset_mapping should have the same batch size as the input")
        if params["is_split_into_words"]:
            texts = [_check_words(words) for words in items]
        else:
            texts = [_check_sentence(text) for text in items]
        limit = self.max_length()
        strided = params["stride"] is not None
        encoded = self.tokenizer(texts, truncation=limit is not None, max_length=limit, stride=params["stride"] or 0,
                                 return_overflowing_tokens=strided, return_special_tokens_mask=True,
                                 return_offsets_mapping=True, is_split_into_words=params["is_split_into_words"],
                                 return_token_type_ids=self.takes_token_types())
        sample_of = encoded["overflow_to_sample_mapping"] if strided else list(range(len(texts)))
        windows = windows_from(encoded, keys=("input_ids", "token_type_ids", "special_tokens_mask", "offset_mapping"))
        grouped = group_by_item(windows, sample_of, len(texts))
        for index, item_windows in enumerate(grouped):
            for window in item_windows:
                if offsets:
                    window["offset_mapping"] = offsets[index]
        return grouped

    # ---------------------------------------------------------------- postprocess
    def postprocess(self, item, windows, params):
        sentence, word_starts = item, None
        if params["is_split_into_words"]:
            sentence, word_starts = _join_words(item, params["delimiter"])
        entities = []
        for window in windows:
            scores = softmax(window.outputs["logits"])
            pre = self.gather_pre_entities(sentence, window, scores, params["strategy"], word_starts)
            entities += [e for e in self.aggregate(pre, params["strategy"])
                         if e.get("entity", e.get("entity_group")) not in params["ignore_labels"]]
        return merge_overlapping(entities) if len(windows) > 1 else entities

    def gather_pre_entities(self, sentence, window, scores, strategy, word_starts=None) -> list[dict]:
        """One record per non-special token: its word piece, scores, character span and whether it continues a word."""
        word_aware = getattr(self.tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None)
        if not word_aware and strategy in WORD_STRATEGIES:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
        word_ids = window["encoding"].word_ids if word_starts is not None else None
        pre = []
        for idx, token_scores in enumerate(scores):
            if window["special_tokens_mask"][idx]:
                continue
            token_id = int(window["input_ids"][idx])
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            start, end = window["offset_mapping"][idx]
            if word_ids is not None and word_ids[idx] is not None:
                start, end = start + word_starts[word_ids[idx]], end + word_starts[word_ids[idx]]
            word_ref = sentence[start:end]
            if word_aware:
                is_subword = len(word) != len(word_ref)
            else:  # transformers' fallback: a token glued to the character before it
                is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if token_id == self.tokenizer.unk_token_id:
                word, is_subword = word_ref, False
            pre.append({"word": word, "scores": token_scores, "start": start, "end": end, "index": idx,
                        "is_subword": is_subword})
        return pre

    def aggregate(self, pre_entities, strategy) -> list[dict]:
        if strategy in ("none", "simple"):
            entities = [self.token_entity(pre) for pre in pre_entities]
        else:
            entities = [self.aggregate_word(group, strategy) for group in _words(pre_entities)]
        return entities if strategy == "none" else self.group_entities(entities)

    def token_entity(self, pre) -> dict:
        index = int(pre["scores"].argmax())
        return {"entity": self.config.id2label[index], "score": float(pre["scores"][index]), "index": pre["index"],
                "word": pre["word"], "start": pre["start"], "end": pre["end"]}

    def aggregate_word(self, tokens: list[dict], strategy: str) -> dict:
        """A word's tokens -> one entity: the first token's label, the most confident token's, or the mean scores'."""
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda token: token["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([token["scores"] for token in tokens]), axis=0)
        index = int(scores.argmax())
        return {"entity": self.config.id2label[index], "score": float(scores[index]),
                "word": self.tokenizer.convert_tokens_to_string([token["word"] for token in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def group_entities(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one type join (a B- tag starts a new one)."""
        groups, current = [], []
        for entity in entities:
            bi, tag = _tag(entity["entity"])
            if current and (tag != _tag(current[-1]["entity"])[1] or bi == "B"):
                groups.append(self.group(current))
                current = []
            current.append(entity)
        if current:
            groups.append(self.group(current))
        return groups

    def group(self, entities: list[dict]) -> dict:
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([entity["score"] for entity in entities])),
                "word": self.tokenizer.convert_tokens_to_string([entity["word"] for entity in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}


def merge_overlapping(entities: list[dict]) -> list[dict]:
    """Entities from overlapping windows: of two that overlap, keep the longer (then the more confident)."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda x: x["start"])
    merged, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


def _words(pre_entities):
    """Consecutive tokens -> words (a word is a token and the sub-word tokens that follow it)."""
    group = []
    for pre in pre_entities:
        if group and not pre["is_subword"]:
            yield group
            group = []
        group.append(pre)
    if group:
        yield group


def _tag(name: str) -> tuple[str, str]:
    if name.startswith(("B-", "I-")):
        return name[0], name[2:]
    return "I", name  # not in B-/I- form: a continuation


def _strategy(strategy, grouped_entities, ignore_subwords) -> str:
    if grouped_entities is not None or ignore_subwords is not None:
        implied = "first" if grouped_entities and ignore_subwords else "simple" if grouped_entities else "none"
        for name, value in (("grouped_entities", grouped_entities), ("ignore_subwords", ignore_subwords)):
            if value is not None:
                warnings.warn(f"`{name}` is deprecated and will be removed in version v5.0.0, defaulted to "
                              f'`aggregation_strategy="{implied}"` instead.')
        strategy = strategy if strategy is not None else implied
    strategy = str(getattr(strategy, "value", strategy or "none")).lower()
    if strategy not in STRATEGIES:
        raise ValueError(f"aggregation_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    return strategy


def _check_sentence(text):
    if not isinstance(text, str):
        raise ValueError("When `is_split_into_words=False`, `sentence` must be an untokenized string.")
    return check_text(text)


def _check_words(words):
    if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
        raise ValueError("When `is_split_into_words=True`, `sentence` must be a list of tokens (a non-empty list "
                         "of str).")
    return words


def _join_words(words: list[str], delimiter: str) -> tuple[str, list[int]]:
    """Pre-split words -> the sentence they make joined by `delimiter`, and each word's first character."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + len(delimiter)
    return delimiter.join(words), starts
