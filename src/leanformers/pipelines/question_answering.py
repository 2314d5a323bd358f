"""question-answering: the best span of the context, as transformers 4.57 finds it.

A context longer than `max_seq_len` is cut into overlapping spans (`doc_stride` tokens shared); all spans of all
questions batch together. Each span's start/end probabilities score every (start, end) pair up to
`max_answer_len` tokens; answers are mapped back to characters of the original context.
"""
from __future__ import annotations

import warnings

import numpy as np

from .base import Pipeline, check_text, group_by_item, windows_from

IMPOSSIBLE_SCORE = 1000000  # transformers' starting "null answer" score: large and positive


class QuestionAnsweringPipeline(Pipeline):
    task = "question-answering"
    heads = ("question_answering",)
    output_keys = ("start_logits", "end_logits")

    def parameters(self, padding=None, topk=None, top_k=None, doc_stride=None, max_answer_len=None, max_seq_len=None,
                   max_question_len=None, handle_impossible_answer=None, align_to_words=None, **kwargs):
        super().parameters(**kwargs)
        if topk is not None and top_k is None:
            warnings.warn("topk parameter is deprecated, use top_k instead", UserWarning)
            top_k = topk
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len), ("max_seq_len", max_seq_len)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} parameter should be >= 1 (got {value})")
        max_seq_len = max_seq_len or min(self.max_length() or 384, 384)
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        if doc_stride > max_seq_len:
            raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
        # padding and max_question_len do not change transformers' fast-tokenizer results: accepted, not needed
        return {"top_k": top_k or 1, "max_answer_len": max_answer_len or 15, "max_seq_len": max_seq_len,
                "doc_stride": doc_stride, "handle_impossible_answer": bool(handle_impossible_answer),
                "align_to_words": True if align_to_words is None else align_to_words}

    def __call__(self, *args, **kwargs):
        examples = _examples(args, kwargs.pop("question", None), kwargs.pop("context", None))
        if isinstance(examples, list) and len(examples) == 1:
            examples = examples[0]  # transformers answers a batch of one as a single example
        return super().__call__(examples, **kwargs)

    # ---------------------------------------------------------------- encode
    @property
    def question_first(self) -> bool:
        return self.tokenizer.padding_side == "right"

    def encode(self, items, params):
        examples = [_example(item) for item in items]
        questions = [q for q, _ in examples]
        contexts = [c for _, c in examples]
        first, second = (questions, contexts) if self.question_first else (contexts, questions)
        try:
            encoded = self.tokenizer(first, second, truncation="only_second" if self.question_first else "only_first",
                                     max_length=params["max_seq_len"], stride=params["doc_stride"],
                                     return_token_type_ids=True, return_overflowing_tokens=True,
                                     return_offsets_mapping=True, return_special_tokens_mask=True)
        except Exception as err:  # the tokenizers library's own message, e.g. a question longer than max_seq_len
            raise ValueError(f"question-answering could not split the context into spans of max_seq_len="
                             f"{params['max_seq_len']} tokens with doc_stride={params['doc_stride']} (is a question "
                             f"too long, or doc_stride too large?): {err}") from None
        windows = windows_from(encoded)
        for window in windows:
            window["p_mask"] = self.p_mask(window)
        return group_by_item(windows, encoded["overflow_to_sample_mapping"], len(items))

    def p_mask(self, window) -> np.ndarray:
        """(1, T): 1 where a token cannot be part of the answer (question, special tokens), 0 on context and CLS."""
        sequence_ids = window["encoding"].sequence_ids
        mask = np.array([[int(s != 1) if self.question_first else 0 for s in sequence_ids]])
        if self.tokenizer.cls_token_id is not None:
            mask[0, np.asarray(window["input_ids"]) == self.tokenizer.cls_token_id] = 0
        return mask

    # ---------------------------------------------------------------- postprocess
    def postprocess(self, item, windows, params):
        context = _example(item)[1]
        min_null_score, answers = IMPOSSIBLE_SCORE, []
        pre_top_k = params["top_k"] * 2 + 10 if params["align_to_words"] else params["top_k"]
        for window in windows:
            starts, ends, scores, min_null_score = select_starts_ends(
                window.outputs["start_logits"][None], window.outputs["end_logits"][None], window["p_mask"],
                min_null_score, pre_top_k, params["handle_impossible_answer"], params["max_answer_len"])
            for s, e, score in zip(starts, ends, scores):
                start, end = self.char_span(window["encoding"], int(s), int(e), params["align_to_words"])
                text = context[start:end]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:  # the same answer found in another span adds up
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": start, "end": end, "answer": text})
        if params["handle_impossible_answer"]:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:params["top_k"]]
        return answers[0] if len(answers) == 1 else answers

    def char_span(self, encoding, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
        """Token span -> character span in the context (widened to whole words when align_to_words)."""
        sequence_index = 1 if self.question_first else 0
        if align_to_words:
            try:
                start = encoding.word_to_chars(encoding.token_to_word(s), sequence_index=sequence_index)[0]
                end = encoding.word_to_chars(encoding.token_to_word(e), sequence_index=sequence_index)[1]
                return start, end
            except Exception:  # a special token has no word: fall back to token offsets, as transformers does
                pass
        return encoding.offsets[s][0], encoding.offsets[e][1]


def select_starts_ends(start, end, p_mask, min_null_score, top_k, handle_impossible_answer, max_answer_len):
    """(1, T) start/end logits -> the top_k (start, end, score) spans; transformers' operations, shapes included."""
    undesired_tokens = np.abs(p_mask - 1) & np.ones_like(p_mask)  # padding is already cut away
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def decode_spans(start, end, top_k: int, max_answer_len: int, undesired_tokens):
    """Score every span start <= end < start + max_answer_len by p(start) * p(end); keep the best top_k."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if top_k == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < top_k:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, top_k)[0:top_k]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    # as transformers: nonzero() of the (1, T) mask is (rows, columns), so index 0 also counts as allowed
    desired = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts, ends = starts[desired], ends[desired]
    return starts, ends, candidates[0, starts, ends]


# ---------------------------------------------------------------- inputs
def _examples(args, question, context):
    """transformers' accepted forms -> a list of {"question", "context"} dicts (or a generator, passed through)."""
    if args:
        if question is not None or context is not None:
            raise ValueError("give the inputs either positionally or as question=/context=, not both")
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            return [{"question": args[0], "context": args[1]}]
        inputs = args[0] if len(args) == 1 else list(args)
        if isinstance(inputs, dict):
            return [inputs]
        return inputs if not isinstance(inputs, (list, tuple)) else list(inputs)
    if question is None or context is None:
        missing = " and ".join(n for n, v in (("question", question), ("context", context)) if v is None)
        raise ValueError(f"question-answering needs a question and a context; {missing} missing (pass question=..., "
                         "context=... or {'question': ..., 'context': ...})")
    if isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise ValueError("Questions and contexts don't have the same lengths")
        return [{"question": q, "context": c} for q, c in zip(question, context)]
    if isinstance(question, list):
        return [{"question": q, "context": context} for q in question]
    return [{"question": question, "context": context}]


def _example(item) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise ValueError(f"{str(item)[:60]!r} argument needs to be a dict with keys 'question' and 'context'")
    for key in ("question", "context"):
        if key not in item or item[key] is None:
            raise ValueError(f"question-answering needs a {key!r} in each input; got keys {sorted(item)}")
        check_text(item[key], key)
    return item["question"], item["context"]
