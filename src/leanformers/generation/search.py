"""generate(): greedy, sampling and beam search over any model that follows the transformers call protocol.

causal LM:        model(input_ids, attention_mask, [position_ids], past_key_values, use_cache)
                  -> .logits, .past_key_values
encoder-decoder:  model.get_encoder()(input_ids, attention_mask) once, then
                  model(encoder_outputs, attention_mask, decoder_input_ids, past_key_values, use_cache);
                  the encoder output and mask are repeated per beam / returned sequence unless the model declares
                  `grouped_cross_attention` (its decoder then takes them once per input, B rows for B * k)
The prompt goes in once (prefill); after that each step feeds only the newest token and the cache. Token choice,
tie-breaking and beam bookkeeping follow transformers 4.57.6 op for op, so the ids are the same.
"""
from __future__ import annotations

import copy
import inspect
import logging
import time
from dataclasses import dataclass, fields

import torch

from .config import DEFAULTS, GenerationConfig
from .processors import StopStrings, apply_processors, build_processors

logger = logging.getLogger(__name__)


@dataclass
class GenerateOutput:
    """What `generate(..., return_dict_in_generate=True)` returns (transformers' Generate*Output fields)."""
    sequences: torch.Tensor                       # (B * num_return_sequences, T)
    scores: tuple | None = None                   # per step, (N, V) processed scores
    logits: tuple | None = None                   # per step, (N, V) raw logits (output_logits=True)
    sequences_scores: torch.Tensor | None = None  # beam search: final score of each returned sequence
    beam_indices: torch.Tensor | None = None      # beam search: (B * num_return_sequences, new tokens)
    encoder_outputs: object = None
    past_key_values: object = None

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)[key]

    def __contains__(self, key):
        return getattr(self, key, None) is not None


def _cfg(config, name, default=None):
    """Read a model config field whether the config is ours (`.get`) or attribute-only (transformers')."""
    getter = getattr(config, "get", None)
    if callable(getter):
        return getter(name, default)
    value = getattr(config, name, default)
    return default if value is None else value


_FORWARD_PARAMETERS: dict[type, frozenset] = {}


def _forward_parameters(model) -> frozenset:
    """Names model.forward accepts, looked up once per model class (position_ids, logits_to_keep, ...)."""
    cls = type(model)
    if cls not in _FORWARD_PARAMETERS:
        forward = getattr(model, "forward", model)
        _FORWARD_PARAMETERS[cls] = frozenset(inspect.signature(forward).parameters)
    return _FORWARD_PARAMETERS[cls]


# ---------------------------------------------------------------- configuration
def model_generation_config(model) -> GenerationConfig:
    """The model's own GenerationConfig: `model.generation_config`, else (once) generation_config.json next to its
    weights, else the generation fields of its config.json."""
    existing = getattr(model, "generation_config", None)
    if existing is not None:
        return existing if isinstance(existing, GenerationConfig) else GenerationConfig.from_any(existing)
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"{type(model).__name__} cannot generate: it has no `config`.")
    found = GenerationConfig.for_model(config, getattr(config, "_name_or_path", None) or None)
    try:  # remember it, as transformers models keep `generation_config` after loading
        model.generation_config = found
    except (AttributeError, TypeError):
        pass
    return found


def prepare_generation_config(model, generation_config=None, use_model_defaults=None, **kwargs):
    """(config for this call, kwargs that are not config fields): transformers' _prepare_generation_config."""
    model_config = model_generation_config(model)
    if generation_config is None:
        gc = copy.deepcopy(model_config)
    else:
        gc = GenerationConfig.from_any(generation_config)
        gc.merge_model_defaults(model_config, use_model_defaults)
    model_kwargs = gc.update(**kwargs)
    gc.validate_for_generate()
    return gc, model_kwargs


def _as_tensor(token_ids, device) -> torch.Tensor | None:
    if token_ids is None:
        return None
    if isinstance(token_ids, torch.Tensor):
        return token_ids.to(device)
    return torch.tensor(token_ids, dtype=torch.long, device=device)


def _special_tokens(gc, is_encoder_decoder, device):
    """(eos (E,) | None, pad tensor | None, decoder start (scalar or (B,)) | None), with transformers' fallbacks."""
    eos = _as_tensor(gc.eos_token_id, device)
    if eos is not None and eos.ndim == 0:
        eos = eos.unsqueeze(0)
    pad = _as_tensor(gc.pad_token_id, device)
    if pad is None and eos is not None:
        logger.warning("Setting `pad_token_id` to `eos_token_id`:%s for open-end generation.", int(eos[0]))
        pad = eos[0]
    start = None
    if is_encoder_decoder:
        start = _as_tensor(gc.decoder_start_token_id, device)
        start = start if start is not None else _as_tensor(gc.bos_token_id, device)
        if start is None:
            raise ValueError("`decoder_start_token_id` or `bos_token_id` has to be set for encoder-decoder "
                             "generation (in generation_config.json, config.json or as an argument).")
    return eos, pad, start


def _prepare_lengths(gc, model_config, prompt_length, max_length_given):
    """transformers' _prepare_generated_length + _validate_generated_length."""
    if gc.max_new_tokens is not None:
        gc.max_length = gc.max_new_tokens + prompt_length
    elif not max_length_given and gc.max_length == DEFAULTS["max_length"]:
        gc.max_length += prompt_length  # the default means "20 new tokens"
        max_positions = _cfg(model_config, "max_position_embeddings")
        if max_positions is not None:
            gc.max_length = min(gc.max_length, max_positions)
    if gc.min_new_tokens is not None:
        gc.min_length = gc.min_new_tokens + prompt_length
    if prompt_length >= gc.max_length:
        raise ValueError(f"The prompt is {prompt_length} tokens long but `max_length` is {gc.max_length}: "
                         "increase `max_length` or, better, set `max_new_tokens`.")


def _infer_attention_mask(input_ids, pad, eos):
    """1 everywhere, or 0 at pad tokens when pad is present and is not also eos (transformers' rule)."""
    if pad is None or input_ids.dtype not in (torch.int, torch.long):
        return torch.ones_like(input_ids)
    pad_is_eos = eos is not None and bool(torch.isin(eos, pad).any())
    if pad_is_eos or not bool((input_ids == pad).any()):
        return torch.ones_like(input_ids)
    return input_ids.ne(pad).long()


# ---------------------------------------------------------------- the model call
class _Stepper:
    """Calls the model: the whole prompt first, then only the newest token against the cache. Returns (N, V) fp32."""

    def __init__(self, model, attention_mask, use_cache, encoder_outputs=None, decoder_attention_mask=None,
                 extra=None):
        self.model = model
        self.is_encoder_decoder = encoder_outputs is not None
        accepted = _forward_parameters(model)
        self.pass_positions = (not self.is_encoder_decoder and attention_mask is not None
                               and "position_ids" in accepted)
        self.fixed = dict(extra or {})
        if "logits_to_keep" in accepted:
            self.fixed["logits_to_keep"] = 1
        if self.is_encoder_decoder:
            self.fixed.update(encoder_outputs=encoder_outputs, attention_mask=attention_mask)
        self.attention_mask = decoder_attention_mask if self.is_encoder_decoder else attention_mask
        self.use_cache = use_cache
        self.cache = None
        self.calls = 0

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:  # (N, T) -> (N, V)
        new = sequences if (self.calls == 0 or not self.use_cache) else sequences[:, -1:]
        kwargs = dict(self.fixed, past_key_values=self.cache, use_cache=self.use_cache)
        mask = self.attention_mask
        if mask is not None and mask.shape[1] < sequences.shape[1]:  # generated tokens are always attended
            grow = mask.new_ones(mask.shape[0], sequences.shape[1] - mask.shape[1])
            mask = self.attention_mask = torch.cat([mask, grow], dim=-1)
        if self.is_encoder_decoder:
            kwargs["decoder_input_ids"] = new
            if mask is not None:
                kwargs["decoder_attention_mask"] = mask
        else:
            kwargs["input_ids"] = new
            kwargs["attention_mask"] = mask
            if self.pass_positions:  # left padding: count only attended tokens; pads get position 1
                positions = mask.long().cumsum(-1) - 1
                kwargs["position_ids"] = positions.masked_fill_(mask == 0, 1)[:, -new.shape[1]:]
        out = self.model(**kwargs)
        self.calls += 1
        if self.use_cache:
            self.cache = out.past_key_values
        logits = out.logits[:, -1, :]
        if logits.dtype != torch.float32 or out.logits.shape[1] > 1:  # copy: keep no (N, T, V) prefill alive
            logits = logits.to(copy=True, dtype=torch.float32)
        return logits

    def reorder(self, beam_idx: torch.Tensor):
        if self.cache is None:
            return
        if hasattr(self.model, "_reorder_cache"):
            self.cache = self.model._reorder_cache(self.cache, beam_idx)
        else:
            self.cache.reorder_cache(beam_idx)


class _StoppingCheck:
    """(N, T) -> (N,) bool: the row is done (max length, eos as newest token, a stop string, max time)."""

    def __init__(self, gc, eos, tokenizer):
        self.max_length, self.eos = gc.max_length, eos
        self.deadline = None if gc.max_time is None else time.time() + gc.max_time
        self.stop_strings = None
        if gc.stop_strings is not None:
            if tokenizer is None:
                raise ValueError("`stop_strings` needs the model's tokenizer: pass `tokenizer=` to generate().")
            self.stop_strings = StopStrings(gc.stop_strings, tokenizer)

    def __call__(self, input_ids):
        if input_ids.shape[1] >= self.max_length or (self.deadline is not None and time.time() > self.deadline):
            return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.eos is not None:
            done |= torch.isin(input_ids[:, -1], self.eos)
        if self.stop_strings is not None:
            done |= self.stop_strings(input_ids)
        return done


# ---------------------------------------------------------------- decoding loops
class _Record:
    """Per-step tensors kept for return_dict_in_generate: processed scores and/or raw logits, each (N, V)."""

    def __init__(self, gc):
        self.scores = [] if gc.return_dict_in_generate and gc.output_scores else None
        self.logits = [] if gc.return_dict_in_generate and gc.output_logits else None

    def add(self, logits, scores):
        if self.logits is not None:
            self.logits.append(logits)
        if self.scores is not None:
            self.scores.append(scores)


def _greedy_or_sample(step, input_ids, gc, processors, is_done, pad, streamer, generator, record):
    """One token per row per step, argmax or torch.multinomial (the same draws as transformers for one seed)."""
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    while True:
        logits = step(input_ids)
        next_scores = apply_processors(processors, input_ids, logits)  # (N, V)
        record.add(logits, next_scores)
        if gc.do_sample:
            probs = torch.nn.functional.softmax(next_scores, dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        else:
            # max(dim).indices: argmax's answer (the first maximal index, NaN included) at a third of its CPU time
            next_tokens = next_scores.max(dim=-1).indices
        if is_done.eos is not None:  # rows that already ended keep emitting pad
            next_tokens = torch.where(unfinished, next_tokens, pad)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        unfinished &= ~is_done(input_ids)
        if not unfinished.any():
            return input_ids


def _gather_beams(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """tensor (B, K, ...) -> (B, k, ...): the beams `indices` (B, k) names."""
    while indices.ndim < tensor.ndim:
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


@dataclass
class _Beams:
    """Beam search state; tensors are (B, num_beams, ...). `running_*`: live beams; the rest: best finished."""
    running_sequences: torch.Tensor   # (B, nb, max_length)
    running_scores: torch.Tensor      # (B, nb) sum of log-probs
    running_indices: torch.Tensor     # (B, nb, max_new) flat beam index chosen at each step
    sequences: torch.Tensor
    scores: torch.Tensor              # length-penalised
    indices: torch.Tensor
    finished: torch.Tensor            # (B, nb) bool: slot holds a finished hypothesis
    improvable: torch.Tensor          # (B, 1) bool: live beams may still beat the worst finished one


def _init_beams(input_ids, batch_size, num_beams, max_length, fill) -> _Beams:
    prompt_length = input_ids.shape[1]
    device = input_ids.device
    running = torch.full((batch_size, num_beams, max_length), fill, dtype=torch.int64, device=device)
    running[:, :, :prompt_length] = input_ids.view(batch_size, num_beams, prompt_length)
    running_scores = torch.zeros((batch_size, num_beams), dtype=torch.float, device=device)
    running_scores[:, 1:] = -1e9  # all beams start identical: only the first may expand at step one
    indices = torch.full((batch_size, num_beams, max_length - prompt_length), -1, dtype=torch.int32, device=device)
    return _Beams(running, running_scores, indices, running.clone(),
                  torch.full((batch_size, num_beams), -1e9, dtype=torch.float, device=device), indices.clone(),
                  torch.zeros((batch_size, num_beams), dtype=torch.bool, device=device),
                  torch.ones((batch_size, 1), dtype=torch.bool, device=device))


def _beam_search(step, input_ids, gc, processors, is_done, eos, pad, batch_size, generator, record):
    """transformers 4.57's vectorised beam search (and beam sampling), step for step."""
    num_beams, max_length = gc.num_beams, gc.max_length
    length_penalty, early_stopping = gc.length_penalty, gc.early_stopping
    prompt_length = cur_len = input_ids.shape[1]
    device = input_ids.device
    # keep (eos count + 1) * num_beams candidates so that num_beams live ones remain even if the best all end
    beams_to_keep = max(2, 1 + (eos.shape[0] if eos is not None else 0)) * num_beams
    top_num_beam_mask = torch.arange(beams_to_keep, device=device) < num_beams
    fill = (pad if pad is not None and bool(pad) else eos[0]) if eos is not None else -1
    b = _init_beams(input_ids, batch_size, num_beams, max_length, fill)
    batch_offset = torch.arange(batch_size, device=device).view(-1, 1) * num_beams
    log_probs_buffer = None
    reuse = record.scores is None and all(type(p).__module__ == apply_processors.__module__ for p in processors)
    while True:
        flat = b.running_sequences[:, :, :cur_len].reshape(batch_size * num_beams, cur_len)
        logits = step(flat)
        # the log-softmax goes into one buffer reused every step (a fresh 15 MB tensor per step of a 59k vocabulary
        # at 64 rows pays its page faults again) unless the processed scores are kept for the caller or a
        # caller's own processor sees them (it might keep them)
        if not reuse or log_probs_buffer is None or log_probs_buffer.shape != logits.shape:
            log_probs_buffer = torch.empty_like(logits)
        log_probs = apply_processors(processors, flat, torch.log_softmax(logits, dim=-1, out=log_probs_buffer))
        record.add(logits, log_probs)
        vocab_size = log_probs.shape[-1]
        log_probs = log_probs.view(batch_size, num_beams, vocab_size)
        running = b.running_scores[:, :, None]
        # in place unless the processed scores are kept for the caller: no fresh (rows, vocab) tensor each step
        log_probs = log_probs + running if record.scores is not None else log_probs.add_(running)
        log_probs = log_probs.reshape(batch_size, num_beams * vocab_size)

        # c. the best (or sampled) beams_to_keep continuations over all beams of each input
        if gc.do_sample:
            topk_indices = torch.multinomial(torch.nn.functional.softmax(log_probs, dim=-1),
                                             num_samples=beams_to_keep, generator=generator)
            topk_log_probs = torch.gather(log_probs, 1, topk_indices)
        else:
            topk_log_probs, topk_indices = torch.topk(log_probs, k=beams_to_keep)
        topk_beams = topk_indices // vocab_size
        topk_indices_so_far = _gather_beams(b.running_indices, topk_beams)
        topk_sequences = _gather_beams(b.running_sequences, topk_beams)
        topk_sequences[:, :, cur_len] = topk_indices % vocab_size
        topk_indices_so_far[:, :, cur_len - prompt_length] = topk_beams + batch_offset

        # d. which candidates end here
        hits = is_done(topk_sequences[:, :, :cur_len + 1].reshape(batch_size * beams_to_keep, cur_len + 1))
        hits = hits.view(batch_size, beams_to_keep)

        # e. the best num_beams unfinished candidates live on
        live_log_probs = topk_log_probs + hits.to(torch.float32) * -1.0e9
        keep = torch.topk(live_log_probs, k=num_beams)[1]
        b.running_sequences = _gather_beams(topk_sequences, keep)
        b.running_scores = _gather_beams(live_log_probs, keep)
        b.running_indices = _gather_beams(topk_indices_so_far, keep)

        # f. finished candidates among the top num_beams enter the finished set if they beat its members
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / ((cur_len + 1 - prompt_length) ** length_penalty)
        full = torch.all(b.finished, dim=-1, keepdim=True) & (early_stopping is True)
        finished_scores = finished_scores + full.to(torch.float32) * -1.0e9
        finished_scores = finished_scores + (~b.improvable).to(torch.float32) * -1.0e9
        finished_scores = finished_scores + (~just_finished) * -1.0e9
        merged_scores = torch.cat((b.scores, finished_scores), dim=1)
        best = torch.topk(merged_scores, k=num_beams)[1]
        b.sequences = _gather_beams(torch.cat((b.sequences, topk_sequences), dim=1), best)
        b.scores = _gather_beams(merged_scores, best)
        b.indices = _gather_beams(torch.cat((b.indices, topk_indices_so_far), dim=1), best)
        b.finished = _gather_beams(torch.cat((b.finished, just_finished), dim=1), best)

        # g. the cache follows the surviving beams
        step.reorder(b.running_indices[..., cur_len - prompt_length].reshape(-1))
        cur_len += 1
        b.improvable = _still_improvable(b, cur_len, prompt_length, max_length, early_stopping, length_penalty)
        if not _beams_unfinished(b, hits, early_stopping):
            break
    return _final_beams(b, gc.num_return_sequences, prompt_length)


def _still_improvable(b, cur_len, prompt_length, max_length, early_stopping, length_penalty):
    """Can the best live beam still beat the worst finished one? (transformers' heuristics, incl. 'never')."""
    if early_stopping == "never" and length_penalty > 0.0:
        best_length = max_length - prompt_length
    else:
        best_length = cur_len - prompt_length
    best_running = b.running_scores[:, :1] / (best_length ** length_penalty)
    worst_finished = torch.where(b.finished, torch.min(b.scores, dim=1, keepdim=True)[0], -1.0e9)
    return b.improvable & torch.any(best_running > worst_finished, dim=-1, keepdim=True)


def _beams_unfinished(b, hits, early_stopping) -> bool:
    exists_open_beam = not (bool(torch.all(b.finished)) and early_stopping is True)
    return bool(torch.any(b.improvable)) and exists_open_beam and not bool(torch.all(hits))


def _final_beams(b, num_return_sequences, prompt_length):
    """(sequences, sequence scores, beam indices), cropped to the longest returned hypothesis."""
    batch_size = b.sequences.shape[0]
    sequences = b.sequences[:, :num_return_sequences].reshape(batch_size * num_return_sequences, -1)
    scores = b.scores[:, :num_return_sequences].reshape(-1)
    indices = b.indices[:, :num_return_sequences].reshape(batch_size * num_return_sequences, -1)
    generated = int((indices + 1).bool().sum(dim=1).max())
    return sequences[:, :prompt_length + generated], scores, indices[:, :generated]


# ---------------------------------------------------------------- entry point
def _encoder_outputs(model, input_ids, attention_mask):
    encoder = model.get_encoder()
    return encoder(input_ids=input_ids, attention_mask=attention_mask)


def _grouped_cross_attention(model) -> bool:
    """Whether the decoder takes (B, S) encoder states and mask for its B * k rows (`grouped_cross_attention` on
    the model class): the encoder output is then not repeated per beam or sequence. Other models (transformers'
    own, say) get it repeated, as transformers does."""
    return bool(getattr(model, "grouped_cross_attention", False))


def _expand_encoder_outputs(encoder_outputs, times):
    expanded = copy.copy(encoder_outputs)
    expanded.last_hidden_state = encoder_outputs.last_hidden_state.repeat_interleave(times, dim=0)
    return expanded


def _decoder_prompt(decoder_input_ids, start, batch_size, device):
    """decoder_start_token_id, then the caller's decoder_input_ids if it did not already begin with it."""
    start = start.view(-1, 1) if start.ndim == 1 else torch.full((batch_size, 1), int(start), device=device)
    if start.shape[0] != batch_size:
        raise ValueError(f"`decoder_start_token_id` has {start.shape[0]} entries for a batch of {batch_size}.")
    if decoder_input_ids is None:
        return start, False
    if bool((decoder_input_ids[:, 0] != start[:, 0]).all()):
        return torch.cat([start, decoder_input_ids], dim=-1), True
    return decoder_input_ids, False


def _check_model(model):
    if not callable(model) or getattr(model, "config", None) is None:
        raise TypeError(f"{type(model).__name__} cannot generate: it needs a `config` and a forward call.")
    if _cfg(model.config, "is_encoder_decoder", False) and not hasattr(model, "get_encoder"):
        raise TypeError(f"{type(model).__name__} is an encoder-decoder without `get_encoder()`; it cannot generate.")


def generate(model, input_ids=None, attention_mask=None, generation_config=None, streamer=None, generator=None,
             tokenizer=None, logits_processor=None, use_model_defaults=None, assistant_model=None, **kwargs):
    """Continue `input_ids` (B, T) with `model`; returns (B * num_return_sequences, T') ids or a GenerateOutput.

    kwargs override `generation_config` fields (max_new_tokens=..., num_beams=...); the rest go to the model
    (encoder_outputs, decoder_input_ids, decoder_attention_mask, or any name model.forward accepts).
    `generator` seeds sampling; without it the global torch RNG is used, exactly as transformers does.
    `logits_processor`: extra callables `(input_ids, scores) -> scores`, applied after the built-in ones.
    `use_model_defaults`: whether fields a given `generation_config` leaves at their defaults take the model's
    values (None: yes for generation configs saved by transformers >= 4.50, as transformers does).
    `assistant_model` (or `prompt_lookup_num_tokens=k`): assisted decoding, batch size 1 (generation/assisted.py).
    """
    _check_model(model)
    if input_ids is None:
        input_ids = kwargs.pop("inputs", None)
    with torch.inference_mode():
        gc, model_kwargs = prepare_generation_config(model, generation_config, use_model_defaults, **kwargs)
        result = _generate(model, input_ids, attention_mask, gc, kwargs.get("max_length") is not None, streamer,
                           generator, tokenizer, logits_processor, model_kwargs, assistant_model)
    # ids made under inference_mode cannot be edited in place afterwards; callers (and transformers' users) do that
    if isinstance(result, torch.Tensor):
        return result.clone()
    for name in ("sequences", "sequences_scores", "beam_indices"):
        value = getattr(result, name)
        if value is not None:
            setattr(result, name, value.clone())
    return result


def _generate(model, input_ids, attention_mask, gc, max_length_given, streamer, generator, tokenizer,
              logits_processor, model_kwargs, assistant_model=None):
    is_encoder_decoder = bool(_cfg(model.config, "is_encoder_decoder", False))
    encoder_outputs = model_kwargs.pop("encoder_outputs", None)
    decoder_input_ids = model_kwargs.pop("decoder_input_ids", None)
    decoder_attention_mask = model_kwargs.pop("decoder_attention_mask", None)
    model_kwargs = {k: v for k, v in model_kwargs.items() if v is not None}
    if "inputs_embeds" in model_kwargs or "decoder_inputs_embeds" in model_kwargs:
        raise NotImplementedError("generate() starts from token ids; `inputs_embeds` prompts are not supported.")
    _check_extra_kwargs(model, model_kwargs)
    if streamer is not None and gc.num_beams > 1:
        raise ValueError("`streamer` cannot be used with beam search (num_beams > 1): it streams one sequence.")

    device = _device(model, input_ids)
    eos, pad, start = _special_tokens(gc, is_encoder_decoder, device)
    input_ids = _prompt_ids(input_ids, gc, encoder_outputs, is_encoder_decoder, device)
    batch_size = input_ids.shape[0]
    assisted = None
    if assistant_model is not None or gc.prompt_lookup_num_tokens is not None:
        from . import assisted  # assisted builds on this module's stepper
        assisted = assisted if assisted.requested(gc, assistant_model) else None
        if assisted is not None:
            assisted.validate(model, assistant_model, gc, batch_size)
    if attention_mask is None and encoder_outputs is None:
        attention_mask = _infer_attention_mask(input_ids, pad, eos)
    if not is_encoder_decoder:
        _check_decoder_prompt(model, input_ids, pad, batch_size)

    encoder_input_ids = input_ids if is_encoder_decoder else None
    if is_encoder_decoder:
        if encoder_outputs is None:
            encoder_outputs = _encoder_outputs(model, input_ids, attention_mask)
        input_ids, prepended = _decoder_prompt(decoder_input_ids, start, batch_size, device)
        if prepended and decoder_attention_mask is not None:
            decoder_attention_mask = torch.cat([decoder_attention_mask[:, :1].new_ones((batch_size, 1)),
                                                decoder_attention_mask], dim=-1)

    expand = max(gc.num_beams, gc.num_return_sequences)
    if expand > 1:  # each input's rows (beams or sequences) are consecutive
        input_ids = input_ids.repeat_interleave(expand, dim=0)
        if decoder_attention_mask is not None:
            decoder_attention_mask = decoder_attention_mask.repeat_interleave(expand, dim=0)
        if not (is_encoder_decoder and _grouped_cross_attention(model)):
            attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(expand, dim=0)
            if encoder_outputs is not None:
                encoder_outputs = _expand_encoder_outputs(encoder_outputs, expand)
    if streamer is not None:
        streamer.put(input_ids.cpu())

    prompt_length = input_ids.shape[1]
    _prepare_lengths(gc, model.config, prompt_length, max_length_given)
    # the processors may write into the scores they get unless the raw logits are kept (beam search gives them its
    # own log-softmax copy)
    inplace = gc.num_beams > 1 or not gc.output_logits
    processors = build_processors(gc, prompt_length, eos, encoder_input_ids, inplace) + list(logits_processor or [])
    is_done = _StoppingCheck(gc, eos, tokenizer)
    step = _Stepper(model, attention_mask, gc.use_cache, encoder_outputs, decoder_attention_mask, model_kwargs)
    record = _Record(gc)

    sequences_scores = beam_indices = None
    if assisted is not None:
        sequences, step.cache = assisted.decode(
            model, assistant_model, input_ids, gc, processors, is_done, streamer, generator, record,
            attention_mask=attention_mask, encoder_outputs=encoder_outputs, model_kwargs=model_kwargs,
            decoder_attention_mask=decoder_attention_mask, encoder_input_ids=encoder_input_ids, eos=eos)
    elif gc.num_beams > 1:
        sequences, sequences_scores, beam_indices = _beam_search(step, input_ids, gc, processors, is_done, eos, pad,
                                                                 batch_size, generator, record)
    else:
        sequences = _greedy_or_sample(step, input_ids, gc, processors, is_done, pad, streamer, generator, record)
    if streamer is not None:
        streamer.end()
    if not gc.return_dict_in_generate:
        return sequences
    return GenerateOutput(sequences=sequences, scores=None if record.scores is None else tuple(record.scores),
                          logits=None if record.logits is None else tuple(record.logits),
                          sequences_scores=sequences_scores if gc.output_scores else None,
                          beam_indices=beam_indices, encoder_outputs=encoder_outputs, past_key_values=step.cache)


def _device(model, input_ids):
    if input_ids is not None:
        return input_ids.device
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def _prompt_ids(input_ids, gc, encoder_outputs, is_encoder_decoder, device):
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
            raise ValueError("`input_ids` must be a (batch, length) tensor of token ids, "
                             f"got {type(input_ids).__name__} {getattr(input_ids, 'shape', '')}".rstrip())
        return input_ids
    if is_encoder_decoder and encoder_outputs is not None:  # encoder ran elsewhere: only the batch size matters
        return torch.full(encoder_outputs.last_hidden_state.shape[:2], -100, dtype=torch.long, device=device)
    if gc.bos_token_id is None:
        raise ValueError("`bos_token_id` has to be set when no `input_ids` are given.")
    return torch.full((1, 1), int(gc.bos_token_id), dtype=torch.long, device=device)


def _check_decoder_prompt(model, input_ids, pad, batch_size):
    max_positions = _cfg(model.config, "max_position_embeddings")
    if max_positions is not None and input_ids.shape[1] > max_positions:
        raise ValueError(f"The prompt is {input_ids.shape[1]} tokens long, more than the model's context window "
                         f"(max_position_embeddings={max_positions}); truncate it (truncation=True, max_length=...).")
    if pad is not None and batch_size > 1 and bool((input_ids[:, -1] == pad).any()):
        logger.warning("A decoder-only model got right-padded prompts; pad on the left (padding_side='left') "
                       "for correct results.")


def _check_extra_kwargs(model, model_kwargs):
    accepted = _forward_parameters(model)
    unknown = [k for k in model_kwargs if k not in accepted]
    if unknown:
        raise ValueError(f"generate() got arguments that are neither GenerationConfig fields nor model inputs: "
                         f"{unknown} (check for typos).")
