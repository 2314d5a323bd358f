"""Logits processors: small callables `(input_ids (N, T), scores (N, V)) -> scores (N, V)`.

Each one does the arithmetic of its transformers 4.57.6 namesake, so the numbers match; `build_processors` lists
them in transformers' order (`_get_logits_processor`). A processor never writes into the scores it is given, unless
it was built with `inplace=True`: generate() does that when it owns the scores and keeps no other reference to them,
so that the bans (-inf at a few ids) cost a few writes instead of a fresh (rows, vocab) copy each step (with 64 beam
rows of a 59k vocabulary, a copy is 15 MB and ~3 ms).
`StopStrings` (a stopping check, not a processor) lives here too: it is a pure function of the tokens so far.
"""
from __future__ import annotations

import math

import torch

NEG_INF = -math.inf


class _VocabMask:
    """(V,) bool, True at the given token ids (ids outside the vocabulary are ignored); built once, then reused."""

    def __init__(self, token_ids: torch.Tensor):
        self.token_ids = token_ids
        self.mask = self.ids = None

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if self.mask is None or self.mask.shape[0] != scores.shape[-1] or self.mask.device != scores.device:
            vocab = torch.arange(scores.shape[-1], device=scores.device)
            self.mask = torch.isin(vocab, self.token_ids.to(scores.device))
            self.ids = self.mask.nonzero().view(-1)
        return self.mask

    def ban(self, scores: torch.Tensor, inplace: bool) -> torch.Tensor:
        """-inf in the masked columns of every row: a copy (torch.where, as transformers) or in place."""
        mask = self(scores)
        return scores.index_fill_(1, self.ids, NEG_INF) if inplace else torch.where(mask, NEG_INF, scores)


class _Ban:
    """A processor that only puts -inf at some (row, token) cells; `inplace` lets it write into the given scores."""

    inplace = False


class RepetitionPenalty:
    """Tokens already present (prompt included) get their score divided (>0) or multiplied (<0) by `penalty`."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, input_ids, scores):
        score = torch.gather(scores, 1, input_ids)
        score = torch.where(score < 0, score * self.penalty, score / self.penalty)
        return scores.scatter(1, input_ids, score)


class EncoderRepetitionPenalty(RepetitionPenalty):
    """Tokens of the encoder input are favoured (`penalty` > 1) or avoided; for encoder-decoders."""

    def __init__(self, penalty: float, encoder_input_ids: torch.Tensor):
        super().__init__(1 / penalty)
        self.encoder_input_ids = encoder_input_ids

    def __call__(self, input_ids, scores):
        return super().__call__(self.encoder_input_ids, scores)


def _ngram_bans(context: torch.Tensor, prefix: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, tokens) that would complete an n-gram of `context` (N, S) starting with `prefix` (N, n-1)."""
    windows = context.unfold(1, n, 1)  # (N, S-n+1, n)
    hits = (windows[:, :, :-1] == prefix[:, None, :]).all(-1)  # (N, S-n+1)
    rows, starts = hits.nonzero(as_tuple=True)
    return rows, windows[rows, starts, -1]


class NoRepeatNGram(_Ban):
    """No n-gram may occur twice in the sequence (prompt included)."""

    def __init__(self, ngram_size: int):
        self.n = ngram_size

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] < self.n:  # no complete n-gram yet
            return scores
        prefix = input_ids[:, input_ids.shape[1] - (self.n - 1):]
        rows, tokens = _ngram_bans(input_ids, prefix, self.n)
        return _ban(scores, rows, tokens, self.inplace)


class EncoderNoRepeatNGram(_Ban):
    """No n-gram of the encoder input may be repeated by the decoder."""

    def __init__(self, ngram_size: int, encoder_input_ids: torch.Tensor):
        self.n = ngram_size
        self.encoder_input_ids = encoder_input_ids  # (B, S)

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] < self.n - 1 or self.encoder_input_ids.shape[1] < self.n:
            return scores
        num_beams = scores.shape[0] // self.encoder_input_ids.shape[0]
        context = self.encoder_input_ids.repeat_interleave(num_beams, dim=0)
        prefix = input_ids[:, input_ids.shape[1] - (self.n - 1):]
        rows, tokens = _ngram_bans(context, prefix, self.n)
        return _ban(scores, rows, tokens, self.inplace)


def _ban(scores, rows, tokens, inplace=False):
    if rows.numel() == 0:
        return scores
    scores = scores if inplace else scores.clone()
    scores[rows, tokens] = NEG_INF
    return scores


class BadWords(_Ban):
    """A listed token sequence may not be completed; single tokens are never allowed (eos excepted)."""

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id: torch.Tensor | None = None):
        if not isinstance(bad_words_ids, list) or not bad_words_ids or \
                not all(isinstance(w, list) and w and all(isinstance(t, int) and t >= 0 for t in w)
                        for w in bad_words_ids):
            raise ValueError(f"`bad_words_ids` has to be a non-empty list of non-empty lists of non-negative token "
                             f"ids, but is {bad_words_ids!r}.")
        eos = set(eos_token_id.tolist()) if eos_token_id is not None else set()
        words = [w for w in bad_words_ids if not (len(w) == 1 and w[0] in eos)]
        self.single = torch.tensor(sorted({w[0] for w in words if len(w) == 1}), dtype=torch.long)
        self.single_mask = _VocabMask(self.single)
        self.sequences = [w for w in words if len(w) > 1]

    def __call__(self, input_ids, scores):
        vocab_size = scores.shape[-1]
        too_big = [t for w in self.sequences for t in w if t >= vocab_size] + \
                  [t for t in self.single.tolist() if t >= vocab_size]
        if too_big:
            raise ValueError(f"`bad_words_ids` names tokens {too_big} beyond the vocabulary size {vocab_size}.")
        scores = self.single_mask.ban(scores, self.inplace)  # a copy unless in place: the sequences write below
        for word in self.sequences:
            if len(word) > input_ids.shape[1]:
                continue
            prefix = torch.tensor(word[:-1], dtype=input_ids.dtype, device=input_ids.device)
            scores[(input_ids[:, -len(prefix):] == prefix).all(1), word[-1]] = NEG_INF
        return scores


class MinLength(_Ban):
    """eos is forbidden until the sequence (prompt included) is `min_length` long."""

    def __init__(self, min_length: int, eos_token_id: torch.Tensor, prompt_length: int = 0):
        self.min_length, self.prompt_length = min_length, prompt_length
        self.eos_mask = _VocabMask(eos_token_id)

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] - self.prompt_length >= self.min_length:
            return scores
        return self.eos_mask.ban(scores, self.inplace)


class ForcedToken:
    """At sequence length `at_length`, every token but `token_id`(s) gets -inf and those get 0."""

    def __init__(self, token_id, at_length: int):
        self.token_id, self.at_length = token_id, at_length

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] != self.at_length:
            return scores
        forced = torch.full_like(scores, NEG_INF)
        forced[:, self.token_id] = 0
        return forced


class InfNanRemove:
    def __call__(self, input_ids, scores):
        cleaned = torch.where(scores != scores, 0.0, scores)
        cleaned = torch.where(scores == math.inf, torch.finfo(scores.dtype).max, cleaned)
        return torch.where(scores == NEG_INF, torch.finfo(scores.dtype).min, cleaned)


class ExponentialDecayLengthPenalty:
    """After `start` new tokens, eos scores grow by factor**k (k tokens past the start)."""

    def __init__(self, start_and_factor: tuple[int, float], eos_token_id: torch.Tensor, prompt_length: int):
        self.start = start_and_factor[0] + prompt_length
        self.factor = start_and_factor[1]
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids, scores):
        cur_len = input_ids.shape[-1]
        if cur_len <= self.start:
            return scores
        penalties = torch.zeros_like(scores)
        eos = self.eos_token_id.to(scores.device)
        penalties[:, eos] = torch.abs(scores[:, eos]) * (pow(self.factor, cur_len - self.start) - 1)
        return scores + penalties


class SuppressTokens(_Ban):
    """The listed tokens get -inf; only at sequence length `at_length` when it is given."""

    def __init__(self, token_ids, at_length: int | None = None):
        self.mask = _VocabMask(torch.tensor(list(token_ids), dtype=torch.long))
        self.at_length = at_length

    def __call__(self, input_ids, scores):
        if self.at_length is not None and input_ids.shape[-1] != self.at_length:
            return scores
        return self.mask.ban(scores, self.inplace)


# ---- sampling warpers (only when do_sample)
class Temperature:
    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, input_ids, scores):
        return scores / self.temperature


class TopK:
    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        top_k = min(self.top_k, scores.size(-1))
        return scores.masked_fill(scores < torch.topk(scores, top_k)[0][..., -1, None], NEG_INF)


class TopP:
    """Keep the smallest set of most likely tokens whose probability reaches `top_p`."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        self.top_p, self.min_tokens_to_keep = float(top_p), min_tokens_to_keep

    def __call__(self, input_ids, scores):
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_remove = cumulative_probs <= 1 - self.top_p
        sorted_remove[..., -self.min_tokens_to_keep:] = False
        return scores.masked_fill(sorted_remove.scatter(1, sorted_indices, sorted_remove), NEG_INF)


class MinP:
    """Drop tokens whose probability is below `min_p` times the top token's."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        self.min_p, self.min_tokens_to_keep = min_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        probs = torch.softmax(scores, dim=-1)
        remove = probs < self.min_p * probs.max(dim=-1, keepdim=True)[0]
        sorted_indices = torch.argsort(scores, descending=True, dim=-1)
        sorted_remove = torch.gather(remove, dim=-1, index=sorted_indices)
        sorted_remove[..., :self.min_tokens_to_keep] = False
        return scores.masked_fill(sorted_remove.scatter(1, sorted_indices, sorted_remove), NEG_INF)


class Typical:
    """Locally typical sampling: keep tokens whose surprise is closest to the entropy, up to `mass`."""

    def __init__(self, mass: float, min_tokens_to_keep: int = 1):
        self.mass, self.min_tokens_to_keep = float(mass), min_tokens_to_keep

    def __call__(self, input_ids, scores):
        normalized = torch.nn.functional.log_softmax(scores, dim=-1)
        entropy = -(normalized * torch.exp(normalized)).nansum(-1, keepdim=True)
        sorted_scores, sorted_indices = torch.sort(torch.abs(-normalized - entropy), descending=False)
        cumulative_probs = scores.gather(-1, sorted_indices).softmax(dim=-1).cumsum(dim=-1)
        last_ind = (cumulative_probs < self.mass).sum(dim=1).clamp_(max=sorted_scores.shape[-1] - 1)
        sorted_remove = sorted_scores > sorted_scores.gather(1, last_ind.view(-1, 1))
        sorted_remove[..., :self.min_tokens_to_keep] = False
        return scores.masked_fill(sorted_remove.scatter(1, sorted_indices, sorted_remove), NEG_INF)


class EpsilonCutoff:
    """Drop tokens with probability below `epsilon` (eta sampling: an entropy-dependent epsilon)."""

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1, eta: bool = False):
        self.epsilon, self.min_tokens_to_keep, self.eta = epsilon, min_tokens_to_keep, eta

    def __call__(self, input_ids, scores):
        probabilities = scores.softmax(dim=-1)
        cutoff = self.epsilon
        if self.eta:
            epsilon = torch.tensor(self.epsilon, device=scores.device)
            entropy = torch.distributions.Categorical(logits=scores).entropy()
            cutoff = torch.min(epsilon, torch.sqrt(epsilon) * torch.exp(-entropy))[..., None]
        top_k = min(self.min_tokens_to_keep, scores.size(-1))
        remove = (probabilities < cutoff) & (scores < torch.topk(scores, top_k)[0][..., -1, None])
        return scores.masked_fill(remove, NEG_INF)


class LogSoftmax:
    def __call__(self, input_ids, scores):
        return scores.log_softmax(dim=-1)


def apply_processors(processors, input_ids, scores):
    for processor in processors:
        scores = processor(input_ids, scores)
    return scores


def build_processors(gc, prompt_length: int, eos_token_id: torch.Tensor | None,
                     encoder_input_ids: torch.Tensor | None = None, inplace: bool = False) -> list:
    """The processors `gc` (a prepared GenerationConfig) asks for, in transformers' order.

    `prompt_length` is the length of the sequence generation starts from (the decoder prompt for encoder-decoders).
    `inplace`: the bans write into the scores they are given (the caller owns them and keeps no other reference).
    """
    p = []
    if gc.encoder_repetition_penalty not in (None, 1.0) and encoder_input_ids is not None:
        p.append(EncoderRepetitionPenalty(float(gc.encoder_repetition_penalty), encoder_input_ids))
    if gc.repetition_penalty not in (None, 1.0):
        p.append(RepetitionPenalty(float(gc.repetition_penalty)))
    if gc.no_repeat_ngram_size:
        p.append(NoRepeatNGram(_positive_int("no_repeat_ngram_size", gc.no_repeat_ngram_size)))
    if gc.encoder_no_repeat_ngram_size and encoder_input_ids is not None:
        n = _positive_int("encoder_no_repeat_ngram_size", gc.encoder_no_repeat_ngram_size)
        p.append(EncoderNoRepeatNGram(n, encoder_input_ids))
    if gc.bad_words_ids is not None:
        p.append(BadWords(gc.bad_words_ids, eos_token_id))
    if eos_token_id is not None and gc.min_length:
        p.append(MinLength(gc.min_length, eos_token_id))
    if eos_token_id is not None and gc.min_new_tokens and gc.min_length != prompt_length + gc.min_new_tokens:
        # (generate sets min_length to exactly this, making a second, identical eos ban redundant)
        p.append(MinLength(gc.min_new_tokens, eos_token_id, prompt_length))
    if gc.forced_bos_token_id is not None:
        p.append(ForcedToken(gc.forced_bos_token_id, 1))
    if gc.forced_eos_token_id is not None:
        p.append(ForcedToken(gc.forced_eos_token_id, gc.max_length - 1))
    if gc.remove_invalid_values:
        p.append(InfNanRemove())
    if gc.exponential_decay_length_penalty is not None and eos_token_id is not None:
        p.append(ExponentialDecayLengthPenalty(gc.exponential_decay_length_penalty, eos_token_id, prompt_length))
    if gc.suppress_tokens is not None:
        p.append(SuppressTokens(gc.suppress_tokens))
    if gc.begin_suppress_tokens is not None:
        begin = prompt_length + (1 if prompt_length == 1 and gc.forced_bos_token_id is not None else 0)
        p.append(SuppressTokens(gc.begin_suppress_tokens, at_length=begin))
    if gc.do_sample:
        p.extend(_sampling_warpers(gc, eos_token_id))
    if gc.renormalize_logits:
        p.append(LogSoftmax())
    for processor in p:
        if isinstance(processor, _Ban):
            processor.inplace = inplace
    return p


def _sampling_warpers(gc, eos_token_id) -> list:
    # beam sampling keeps enough candidates that eos cannot crowd out every live beam
    keep = 1 if gc.num_beams == 1 else (eos_token_id.shape[0] + 1 if eos_token_id is not None else 2)
    w = []
    if gc.temperature is not None and gc.temperature != 1.0:
        w.append(Temperature(float(gc.temperature)))
    if gc.top_k is not None and gc.top_k != 0:
        w.append(TopK(gc.top_k, keep))
    if gc.top_p is not None and gc.top_p < 1.0:
        w.append(TopP(gc.top_p, keep))
    if gc.min_p is not None:
        w.append(MinP(gc.min_p, keep))
    if gc.typical_p is not None and gc.typical_p < 1.0:
        w.append(Typical(gc.typical_p, keep))
    if gc.epsilon_cutoff is not None and 0.0 < gc.epsilon_cutoff < 1.0:
        w.append(EpsilonCutoff(float(gc.epsilon_cutoff), keep))
    if gc.eta_cutoff is not None and 0.0 < gc.eta_cutoff < 1.0:
        w.append(EpsilonCutoff(float(gc.eta_cutoff), keep, eta=True))
    return w


def _positive_int(name, value) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` has to be a strictly positive integer, but is {value!r}")
    return value


class StopStrings:
    """Stop a row when a stop string ends inside its newest token (transformers' StopStringCriteria rule).

    The string may start in earlier tokens or lie wholly inside the newest one; a string that ended before the
    newest token does not count (it was checked when it appeared). Token texts are decoded once per token id,
    after a fixed prefix so that leading spaces survive.
    """
    _PREFIX = "abcdef"

    def __init__(self, stop_strings, tokenizer):
        self.stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise ValueError(f"`stop_strings` must be a non-empty string or list of them, got {stop_strings!r}")
        self.tokenizer = tokenizer
        self.prefix_ids = list(tokenizer(self._PREFIX, add_special_tokens=False)["input_ids"])
        self.longest = max(len(s) for s in self.stop_strings)
        self._texts: dict[int, str] = {}

    def _token_text(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            decoded = self.tokenizer.decode(self.prefix_ids + [token_id])
            cut = decoded.find(self._PREFIX)
            text = decoded[cut + len(self._PREFIX):] if cut >= 0 else decoded
            self._texts[token_id] = text
        return text

    def _row_done(self, ids: list[int]) -> bool:
        last = self._token_text(ids[-1])
        before, i = "", len(ids) - 1
        while len(before) < self.longest and i > 0:  # enough earlier text to hold any stop string
            i -= 1
            before = self._token_text(ids[i]) + before
        text, start = before + last, len(before)  # `start`: where the newest token begins
        return any(text.find(s, max(0, start - len(s) + 1)) != -1 for s in self.stop_strings)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        tail = input_ids[:, -(self.longest + 1):].tolist()
        return torch.tensor([self._row_done(row) for row in tail], dtype=torch.bool, device=input_ids.device)
