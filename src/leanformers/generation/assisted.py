"""Assisted (speculative) decoding: a cheap drafter proposes tokens, the model checks them all in one forward pass.

Two drafters, with transformers' names:
  prompt_lookup_num_tokens=k   prompt lookup: find the newest `max_matching_ngram_size`-gram (default 2, then
                               shorter) earlier in the sequence and propose the k tokens that followed it
  assistant_model=small        a smaller model with the same vocabulary drafts `num_assistant_tokens` (its own
                               generation config: default 20, schedule "constant" or "heuristic"), stopping early
                               when its top probability falls below `assistant_confidence_threshold`
The model then runs once over [newest accepted token, d_1 .. d_k] against its cache: k + 1 next-token scores.
Greedy keeps the drafts up to the first one its argmax disagrees with, then adds its own token there, so the ids
are plain greedy's. Sampling keeps draft i with probability min(1, p_i / q_i) and at the first rejection samples
from norm(max(p - q, 0)) (Leviathan et al. 2023, algorithm 1), so every token is distributed as plain sampling's;
a looked-up draft is deterministic (q one-hot), where the rule reduces to "sample from p, keep while it equals the
draft" (transformers' case 2). Rejected positions are then cropped from both caches.

As transformers: batch size 1, greedy or sampling only (beam search ignores the drafter, with a warning), a cache
that can be cropped. Unlike transformers 4.57.6, prompt lookup never proposes past `max_length - 1` (its lookup can
overshoot `max_new_tokens` by up to k - 1 tokens) and stop conditions are checked after every accepted token, so the
output is exactly plain decoding's, never longer.
"""
from __future__ import annotations

import logging

import torch

from .processors import apply_processors
from .search import _Stepper, model_generation_config

logger = logging.getLogger(__name__)

# their caches cannot take several new tokens at once or be rolled back (ProphetNet's n-gram streams decode one
# token at a time once cached; Transformer-XL keeps a memory of hidden states, not keys and values)
_NOT_ROLLBACKABLE = {"prophetnet": "ProphetNet", "xlm-prophetnet": "XLM-ProphetNet", "transfo-xl": "Transformer-XL"}


def requested(gc, assistant_model) -> bool:
    """Whether this generate() call decodes with a drafter (transformers' ASSISTED_GENERATION mode)."""
    if assistant_model is None and gc.prompt_lookup_num_tokens is None:
        return False
    if gc.num_beams > 1:
        logger.warning("`assistant_model` / `prompt_lookup_num_tokens` select assisted generation, which supports "
                       "greedy search and sampling only; with num_beams=%d beam search runs and they are ignored.",
                       gc.num_beams)
        return False
    return True


def validate(model, assistant_model, gc, batch_size: int):
    """transformers' errors for assisted generation, raised before any work is done."""
    if gc.num_return_sequences > 1:
        raise ValueError("num_return_sequences has to be 1 when doing assisted generate, "
                         f"but is {gc.num_return_sequences}.")
    if not gc.use_cache:
        raise ValueError("assisted generate requires `use_cache=True`")
    if batch_size > 1:
        raise ValueError(f"assisted generate is only supported for batch_size = 1 (got {batch_size} prompts); "
                         "run the prompts one at a time, or drop `prompt_lookup_num_tokens` / `assistant_model`.")
    if gc.prompt_lookup_num_tokens is not None and (gc.prompt_lookup_num_tokens <= 0 or
                                                    (gc.max_matching_ngram_size or 2) <= 0):
        raise ValueError(f"Invalid max_matching_ngram_size ({gc.max_matching_ngram_size}) or "
                         f"prompt_lookup_num_tokens ({gc.prompt_lookup_num_tokens}): both must be positive.")
    for name, m in (("model", model), ("assistant_model", assistant_model)):
        kind = _model_type(m)
        if kind in _NOT_ROLLBACKABLE:
            raise ValueError(f"assisted generation is not supported for {_NOT_ROLLBACKABLE[kind]} (`{name}`): its "
                             "cache cannot check several drafted tokens in one pass and drop the rejected ones.")
    if assistant_model is not None:
        if _config(model, "is_encoder_decoder", False) != _config(assistant_model, "is_encoder_decoder", False):
            raise ValueError("`assistant_model` must be of the same kind as the main model: both decoder-only or "
                             "both encoder-decoder.")
        vocab, assistant_vocab = (_config(m, "vocab_size") for m in (model, assistant_model))
        if vocab != assistant_vocab:
            raise ValueError(f"The main model (vocab_size={vocab}) and `assistant_model` (vocab_size="
                             f"{assistant_vocab}) have different vocabularies; assisted generation needs one token "
                             "space (transformers' universal assisted decoding with two tokenizers is not supported).")


def _config(model, name, default=None):
    config = getattr(model, "config", None)
    getter = getattr(config, "get", None)
    return getter(name, default) if callable(getter) else getattr(config, name, default)


def _model_type(model) -> str | None:
    return None if model is None else _config(model, "model_type")


# ---------------------------------------------------------------- the model calls
class _Verifier(_Stepper):
    """Feeds every token its cache lacks and returns the fp32 logits of the last `keep` positions, (1, keep, V);
    `rollback(n)` forgets all but the first n cached positions."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cached = 0  # positions of the sequence whose keys/values are in the cache
        self.keep_logits = "logits_to_keep" in self.fixed

    def __call__(self, sequences: torch.Tensor, keep: int = 1) -> torch.Tensor:  # (1, T) -> (1, keep, V)
        new = sequences[:, self.cached:]
        kwargs = dict(self.fixed, past_key_values=self.cache, use_cache=True)
        if self.keep_logits:
            kwargs["logits_to_keep"] = keep
        mask = self.attention_mask
        if mask is not None and mask.shape[1] < sequences.shape[1]:  # drafted and generated tokens are attended
            mask = self.attention_mask = torch.cat([mask, mask.new_ones(1, sequences.shape[1] - mask.shape[1])], -1)
        mask = None if mask is None else mask[:, :sequences.shape[1]]
        if self.is_encoder_decoder:
            kwargs["decoder_input_ids"] = new
            if mask is not None:
                kwargs["decoder_attention_mask"] = mask
        else:
            kwargs["input_ids"], kwargs["attention_mask"] = new, mask
            if self.pass_positions:  # a left-padded prompt: count attended tokens only, as plain decoding does
                positions = mask.long().cumsum(-1) - 1
                kwargs["position_ids"] = positions.masked_fill_(mask == 0, 1)[:, -new.shape[1]:]
        out = self.model(**kwargs)
        self.calls += 1
        self.cache, self.cached = out.past_key_values, sequences.shape[1]
        return out.logits[:, -keep:].to(copy=True, dtype=torch.float32)

    def rollback(self, length: int):
        if self.cached <= length:
            return
        crop = getattr(self.cache, "crop", None)
        if crop is None or getattr(self.cache, "extra", None):
            raise ValueError(f"{type(self.model).__name__} returns a cache that cannot be rolled back "
                             f"({type(self.cache).__name__}); assisted generation needs one with `crop()`.")
        crop(length)
        self.cached = length


# ---------------------------------------------------------------- drafters
class PromptLookup:
    """transformers' PromptLookupCandidateGenerator: the first (leftmost) earlier occurrence of the newest n-gram,
    n from `max_matching_ngram_size` down to 1, proposes the tokens that followed it; tokens the processors forbid
    (-inf) cut the draft, and it ends before an eos (else an accepted eos would not end the sequence)."""

    def __init__(self, num_tokens: int, max_ngram: int, eos, processors, vocab_size: int | None):
        self.num_tokens, self.max_ngram, self.eos = num_tokens, max_ngram, eos
        self.processors, self.vocab_size = processors, vocab_size

    def propose(self, input_ids: torch.Tensor, room: int):
        """(draft (1, k) with k <= room, None): looked-up tokens have no draft probabilities."""
        length = input_ids.shape[1]
        room = min(room, self.num_tokens)
        if room <= 0:
            return input_ids[:, :0], None
        for ngram in range(min(self.max_ngram, length - 1), 0, -1):
            windows = input_ids.unfold(1, ngram, 1)  # (1, T - n + 1, n)
            starts = (windows == input_ids[0, -ngram:]).all(dim=2)[0].nonzero().view(-1) + ngram
            for start in starts.tolist():
                draft = input_ids[0, start:min(start + room, length)]
                draft = self._allowed(input_ids, draft)
                if draft.numel() == 0:
                    continue
                if self.eos is not None:
                    at_eos = torch.isin(draft, self.eos).nonzero()
                    if at_eos.numel():
                        draft = draft[:int(at_eos[0])]
                return draft[None], None
        return input_ids[:, :0], None

    def _allowed(self, input_ids, draft):
        """The draft up to its first token the processors would score -inf (or the dtype's minimum)."""
        if not self.processors or draft.numel() == 0 or self.vocab_size is None:
            return draft
        sequence = input_ids
        for i, token in enumerate(draft.tolist()):
            scores = apply_processors(self.processors, sequence, torch.ones(1, self.vocab_size))
            value = float(scores[0, token])
            if value == float("-inf") or value == torch.finfo(scores.dtype).min:
                return draft[:i]
            sequence = torch.cat([input_ids, draft[None, :i + 1]], dim=1)
        return draft

    def accepted(self, input_ids, matched: int, drafted: int):
        """Nothing to learn or roll back (transformers' update_candidate_strategy does nothing here either)."""


class AssistantDrafter:
    """A smaller model (same vocabulary) proposes tokens greedily or by sampling, with the same processors; its
    own cache is cropped to the part of its draft the model accepted."""

    def __init__(self, assistant, gc, processors, is_done, generator, attention_mask, encoder_input_ids,
                 decoder_attention_mask, model_kwargs):
        own = model_generation_config(assistant)
        self.num_tokens = float(own.num_assistant_tokens)
        self.schedule, self.own = own.num_assistant_tokens_schedule, own
        self.threshold = own.assistant_confidence_threshold
        self.gc, self.processors, self.is_done, self.generator = gc, processors, is_done, generator
        encoder_outputs = None
        if encoder_input_ids is not None:  # the assistant has its own encoder
            encoder_outputs = assistant.get_encoder()(input_ids=encoder_input_ids, attention_mask=attention_mask)
        self.step = _Verifier(assistant, attention_mask, True, encoder_outputs, decoder_attention_mask,
                              {k: v for k, v in model_kwargs.items() if k != "logits_to_keep"})

    def propose(self, input_ids: torch.Tensor, room: int):
        """(draft (1, k), its processed scores (1, k, V)), k <= min(num_assistant_tokens, room)."""
        wanted = min(int(self.num_tokens), room)
        if wanted <= 0:
            return input_ids[:, :0], None
        self.step.rollback(input_ids.shape[1] - 1)  # keep one token to feed: it yields the next scores
        sequence, all_scores = input_ids, []
        for _ in range(wanted):
            logits = self.step(sequence)[:, -1]
            scores = apply_processors(self.processors, sequence, logits)
            if self.gc.do_sample:
                token = torch.multinomial(torch.softmax(scores, -1), 1, generator=self.generator)
            else:
                token = scores.max(dim=-1, keepdim=True).indices
            sequence = torch.cat([sequence, token], dim=1)
            all_scores.append(scores)
            if bool(self.is_done(sequence).any()) or self._unsure(scores, token):
                break
        return sequence[:, input_ids.shape[1]:], torch.stack(all_scores, dim=1)

    def _unsure(self, scores, token) -> bool:
        """transformers' ConfidenceCriteria: stop drafting once the assistant's own token has p < threshold."""
        if not self.threshold:
            return False
        return float(torch.softmax(scores, -1)[0, int(token)]) < self.threshold

    def accepted(self, input_ids, matched: int, drafted: int):
        """The "heuristic" schedules grow the draft by 2 after a full match, else shrink it by 1 (transformers)."""
        self.step.rollback(input_ids.shape[1] - 1)
        if self.schedule in ("heuristic", "heuristic_transient"):
            self.num_tokens = self.num_tokens + 2.0 if matched == drafted else max(1.0, self.num_tokens - 1.0)

    def finish(self):
        if self.schedule == "heuristic":  # transformers keeps the learned length on the assistant's config
            self.own.num_assistant_tokens = self.num_tokens


# ---------------------------------------------------------------- acceptance
def _leading_matches(draft: torch.Tensor, chosen: torch.Tensor) -> int:
    """How many draft tokens (1, k) equal the model's choices (1, k) before the first difference."""
    return int((draft == chosen).long().cumprod(dim=1).sum())


def speculative_sampling(draft, draft_scores, scores, generator=None):
    """(accepted tokens (1, n + 1), n): Leviathan et al.'s algorithm 1 on processed scores.

    draft (1, k) was sampled from softmax(draft_scores) (1, k, V); scores (1, k + 1, V) are the model's. Draft i is
    kept with probability min(1, p_i / q_i) until the first rejection; the token after the kept ones is drawn from
    norm(max(p - q, 0)) there, or from p at position k when every draft was kept."""
    k = draft.shape[1]
    q = torch.softmax(draft_scores[0], dim=-1)  # (k, V)
    p = torch.softmax(scores[0], dim=-1)        # (k + 1, V)
    index = torch.arange(k)
    ratio = p[index, draft[0]] / q[index, draft[0]]
    accepted = torch.rand(k, generator=generator, dtype=ratio.dtype) <= ratio
    n = int(accepted.long().cumprod(0).sum())
    if n < k:
        residual = torch.clamp(p[n] - q[n], min=0)
        total = residual.sum()
        distribution = residual / total if total > 0 else p[n]  # p == q: the rejection had probability 0
    else:
        distribution = p[k]
    token = torch.multinomial(distribution, 1, generator=generator)
    return torch.cat([draft[:, :n], token[None]], dim=1), n


# ---------------------------------------------------------------- the loop
def decode(model, assistant_model, input_ids, gc, processors, is_done, streamer, generator, record, *,
           attention_mask=None, encoder_outputs=None, decoder_attention_mask=None, model_kwargs=None,
           encoder_input_ids=None, eos=None):
    """Assisted greedy search or sampling of one sequence; returns (sequences (1, T'), the model's cache)."""
    model_kwargs = model_kwargs or {}
    _pack_for_verification(model)
    verifier = _Verifier(model, attention_mask, True, encoder_outputs, decoder_attention_mask, model_kwargs)
    if assistant_model is not None:
        drafter = AssistantDrafter(assistant_model, gc, processors, is_done, generator, attention_mask,
                                   encoder_input_ids, decoder_attention_mask, model_kwargs)
    else:
        drafter = PromptLookup(gc.prompt_lookup_num_tokens, gc.max_matching_ngram_size or 2, eos, processors,
                               _config(model, "vocab_size"))
    while True:
        length = input_ids.shape[1]
        # the model adds one token of its own after the drafts: never draft past max_length - 1
        draft, draft_scores = drafter.propose(input_ids, gc.max_length - length - 1)
        drafted = draft.shape[1]
        candidate = torch.cat([input_ids, draft], dim=1)
        logits = verifier(candidate, drafted + 1)  # (1, k + 1, V)
        scores = logits.clone() if record.logits is not None else logits
        for i in range(drafted + 1):  # each position sees the sequence before it, as plain decoding would
            scores[:, i] = apply_processors(processors, candidate[:, :length + i], scores[:, i])
        if gc.do_sample and draft_scores is not None:
            new_tokens, matched = speculative_sampling(draft, draft_scores, scores, generator)
        else:
            if gc.do_sample:
                chosen = torch.multinomial(torch.softmax(scores[0], -1), 1, generator=generator).view(1, -1)
            else:
                chosen = scores.max(dim=-1).indices  # (1, k + 1)
            matched = _leading_matches(draft, chosen[:, :drafted])
            new_tokens = chosen[:, :matched + 1]
        new_tokens, finished = _until_done(input_ids, new_tokens, is_done)
        for i in range(new_tokens.shape[1]):
            record.add(logits[:, i], scores[:, i])
        input_ids = torch.cat([input_ids, new_tokens], dim=1)
        if streamer is not None:
            streamer.put(new_tokens.cpu())
        verifier.rollback(input_ids.shape[1] - 1)  # the newest token is fed with the next drafts
        drafter.accepted(input_ids, matched, drafted)
        if finished:
            if hasattr(drafter, "finish"):
                drafter.finish()
            return input_ids, verifier.cache


def _pack_for_verification(model):
    """A verification pass multiplies 1 + k rows by every weight: our models then use weights packed once
    (modeling/packed.py), as generate() does for batched decoding; single-row passes keep F.linear."""
    from ..modeling import packed
    from ..modeling.model import PreTrainedModel

    if isinstance(model, PreTrainedModel) and packed.available():
        packed.enable(model)


def _until_done(input_ids, new_tokens, is_done):
    """(the new tokens up to the first one that ends the sequence, whether one did): plain decoding checks its
    stop conditions after every token, so a stop inside an accepted run must cut it there."""
    for i in range(new_tokens.shape[1]):
        if bool(is_done(torch.cat([input_ids, new_tokens[:, :i + 1]], dim=1)).any()):
            return new_tokens[:, :i + 1], True
    return new_tokens, False
