"""The serving engine, free of HTTP: continuous batching for generation, micro-batching for encoder tasks.

GenerationEngine (llama.cpp's slots, vLLM's scheduler in small): one background thread owns a causal LM and a running
batch. Each decoding step it first admits waiting requests (each prompt is prefilled alone, written straight into a
free row of the batch's KV cache), then runs one step for every row at once, samples each row with that request's
own processors, seed and stop conditions, and hands each new token to its request's queue. A finished or cancelled
row leaves at once; nobody waits for the slowest request.

Rows of different lengths share a step as a left-padded batch: the cache holds one window of positions
[start, end) for all rows, a row's tokens sit at its right end, the attention mask hides the padding before them,
and position ids count only a row's own tokens. So a row computes what it would alone (greedy ids are the same).

PipelineBatcher: requests to an encoder pipeline (fill-mask, NER, embeddings, ...) wait a few milliseconds for
company, then go through the pipeline as one list (which groups them by length), each getting its own result.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import queue
import threading
import time

import torch

from ..generation import GenerationConfig
from ..generation.processors import apply_processors, build_processors

logger = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The waiting queue is at its bound: the caller should retry later (HTTP 503 with Retry-After)."""


class EngineStopped(RuntimeError):
    """The engine is draining or stopped and takes no new requests."""


# ---------------------------------------------------------------- what a request asks for
@dataclasses.dataclass
class SamplingParams:
    """One request's decoding settings (OpenAI's names; temperature 0 = greedy)."""
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                      # 0: off (OpenAI has no top_k)
    min_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()          # strings: generation ends before them (they are not returned)
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    min_new_tokens: int = 0
    frequency_penalty: float = 0.0      # OpenAI's: minus penalty x count of the token in the output so far
    presence_penalty: float = 0.0       # minus penalty once the token is in the output
    repetition_penalty: float = 1.0     # transformers' (prompt included)
    logprobs: bool = False
    top_logprobs: int = 0
    skip_special_tokens: bool = True
    timeout: float | None = None        # seconds from submission; then the row ends with finish_reason "length"

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5  # vLLM's rule: a tinier temperature would only overflow the scores

    def processors(self, prompt_length: int, eos: torch.Tensor | None) -> list:
        """transformers' processors for these settings, then OpenAI's frequency / presence penalties."""
        gc = GenerationConfig(do_sample=not self.greedy, temperature=self.temperature or 1.0, top_p=self.top_p,
                              top_k=self.top_k, min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                              min_new_tokens=self.min_new_tokens or None)
        processors = build_processors(gc, prompt_length, None if self.ignore_eos else eos, inplace=True)
        if self.frequency_penalty or self.presence_penalty:
            # vLLM's order: penalties on the raw logits, before temperature and the truncations
            position = next((i for i, p in enumerate(processors) if type(p).__name__ == "Temperature"),
                            len(processors) if self.greedy else 0)
            processors.insert(position, OutputPenalties(self.frequency_penalty, self.presence_penalty, prompt_length))
        return processors


class OutputPenalties:
    """OpenAI's frequency and presence penalties over the generated tokens (not the prompt)."""

    def __init__(self, frequency: float, presence: float, prompt_length: int):
        self.frequency, self.presence, self.prompt_length = frequency, presence, prompt_length

    def __call__(self, input_ids, scores):  # (1, T), (1, V)
        output = input_ids[:, self.prompt_length:]
        if output.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, output, torch.ones_like(output, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


@dataclasses.dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]        # the most likely tokens of that step, best first


@dataclasses.dataclass
class Delta:
    """What one step adds to a request: new text (held back while it may be the start of a stop string), the new
    token ids, their log-probabilities if asked, and finish_reason ("stop", "length") on the last one."""
    text: str = ""
    token_ids: list[int] = dataclasses.field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    status: int = 500                   # with `error`: 400 the request was at fault, 503 it timed out waiting


class GenerationHandle:
    """The caller's side of one request: iterate its Deltas (sync, or `async for` when made with an event loop);
    `cancel()` frees its row at the next step."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, loop=None):
        self.prompt_ids, self.params = list(prompt_ids), params
        self.loop = loop
        self.cancelled = False
        self.submitted = time.monotonic()
        self.first_token_at: float | None = None
        self._queue = _async_queue() if loop is not None else queue.SimpleQueue()

    def cancel(self):
        self.cancelled = True

    def put(self, delta: Delta):
        if self.loop is None:
            self._queue.put(delta)
            return
        try:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, delta)
        except RuntimeError:  # the caller's event loop is gone: nobody reads this request any more
            self.cancelled = True

    def __iter__(self):
        while True:
            delta = self._queue.get()
            yield delta
            if delta.finish_reason is not None or delta.error is not None:
                return

    async def __aiter__(self):
        while True:
            delta = await self._queue.get()
            yield delta
            if delta.finish_reason is not None or delta.error is not None:
                return


def _async_queue():
    import asyncio

    return asyncio.Queue()


# ---------------------------------------------------------------- the batch's KV cache
class SlotCache:
    """The running batch's KV cache: per layer one (max_rows, H, capacity, D) buffer; rows [0, rows) are live and
    positions [start, end) are the shared window. The model sees it through the KVCache protocol (`update`,
    `get_seq_length`, `cross`). New buffers are zeros, so masked padding never holds NaN garbage."""

    def __init__(self, num_layers: int, max_rows: int):
        self.max_rows = max_rows
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.cross = [None] * num_layers
        self.extra: dict = {}
        self.rows = self.start = self.end = 0
        self.capacity = 0

    def __len__(self):
        return len(self.keys)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.end - self.start

    def update(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor):
        """A decode step: append (rows, H, 1, D) at `end` (advanced by `advance()` after the whole forward)."""
        self._ensure(layer_idx, keys)
        new = keys.shape[2]
        self.keys[layer_idx][:self.rows, :, self.end:self.end + new] = keys
        self.values[layer_idx][:self.rows, :, self.end:self.end + new] = values
        return (self.keys[layer_idx][:self.rows, :, self.start:self.end + new],
                self.values[layer_idx][:self.rows, :, self.start:self.end + new])

    def decode_slot(self, layer_idx: int, like: torch.Tensor):
        """A fused decode step's view (modeling/cache.KVCache.decode_slot): the live rows' window [start, end] and
        the new position `end - start` (advanced by `advance()` after the whole forward, as for update)."""
        self._ensure(layer_idx, like)
        return (self.keys[layer_idx][:self.rows, :, self.start:], self.values[layer_idx][:self.rows, :, self.start:],
                self.end - self.start)

    def advance(self, new: int = 1):
        self.end += new

    def _ensure(self, layer_idx, like: torch.Tensor):
        if self.keys[layer_idx] is None:
            shape = (self.max_rows, like.shape[1], max(self.capacity, 64), like.shape[3])
            self.capacity = shape[2]
            self.keys[layer_idx] = like.new_zeros(shape)
            self.values[layer_idx] = like.new_zeros(shape)

    def reserve(self, left: int, right: int):
        """Room for `left` more positions before `start` and `right` after `end`: free when the buffer has it,
        else the live window moves into a fresh, larger buffer."""
        if self.start >= left and self.end + right <= self.capacity:
            self.start -= left
            return
        window = self.end - self.start
        capacity = max(64, 2 * (window + left + right))
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                if old is None:
                    continue
                grown = old.new_zeros(old.shape[0], old.shape[1], capacity, old.shape[3])
                grown[:self.rows, :, left:left + window] = old[:self.rows, :, self.start:self.end]
                store[i] = grown
        self.capacity, self.start, self.end = capacity, 0, left + window

    def prefill_view(self, row: int, count: int, length: int) -> _RowPrefill:
        return _RowPrefill(self, row, count, length)

    def move_row(self, source: int, target: int):
        for store in (self.keys, self.values):
            for buffer in store:
                if buffer is not None:
                    buffer[target, :, self.start:self.end] = buffer[source, :, self.start:self.end]

    def trim(self, longest: int):
        """Forget window positions no live row needs (rows hold at most `longest` tokens, right-aligned)."""
        self.start = max(self.start, self.end - longest)
        if self.rows == 0:
            self.start = self.end = 0


class _RowPrefill:
    """The cache as new rows' prefill sees it: empty before, their (left-padded) prompts written at
    [end - length, end) of rows [row, row + count), and only those returned (a lone prompt computes exactly what it
    would alone)."""

    def __init__(self, cache: SlotCache, row: int, count: int, length: int):
        self.cache, self.row, self.count, self.length = cache, row, count, length
        self.cross, self.extra = [None] * len(cache), {}

    def __len__(self):
        return len(self.cache)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0

    def update(self, layer_idx, keys, values):
        c = self.cache
        c._ensure(layer_idx, keys)
        span, rows = slice(c.end - self.length, c.end), slice(self.row, self.row + self.count)
        c.keys[layer_idx][rows, :, span] = keys
        c.values[layer_idx][rows, :, span] = values
        return c.keys[layer_idx][rows, :, span], c.values[layer_idx][rows, :, span]


# ---------------------------------------------------------------- incremental detokenizing and stop strings
class TextStream:
    """Token ids in, text out as soon as it is final (TGI's prefix/read offsets: no half UTF-8 characters), with
    stop strings cut off and text that may begin one held back."""

    def __init__(self, tokenizer, stop: tuple[str, ...], skip_special_tokens: bool, lock=None):
        self.tokenizer, self.stop, self.skip = tokenizer, stop, skip_special_tokens
        self.lock = lock or threading.RLock()
        self.ids: list[int] = []
        self.prefix_offset = self.read_offset = 0
        self.held = ""
        self.stopped = False

    def _decode(self, ids):
        with self.lock:  # a `tokenizers` backend may not be used from two threads at once ("Already borrowed")
            return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def add(self, token_id: int) -> str:
        """The text that is final after this token ("" while a character or a possible stop string is open)."""
        self.ids.append(token_id)
        if self.stopped:
            return ""
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return self._release(self.held + after[len(before):])

    def _release(self, text: str) -> str:
        if not self.stop:
            return text
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self.held = True, ""
            return text[:cut]
        keep = max((n for s in self.stop for n in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """At the end: the text still held back (an unfinished character decodes as U+FFFD, as transformers does)."""
        rest = self._decode(self.ids[self.prefix_offset:])[len(self._decode(self.ids[self.prefix_offset:
                                                                                     self.read_offset])):]
        text, self.held = self.held + rest, ""
        return text


# ---------------------------------------------------------------- the continuous-batching engine
@dataclasses.dataclass
class _Row:
    handle: GenerationHandle
    tokens: torch.Tensor          # (1, prompt + max_new): the row's own sequence, no padding
    length: int                   # tokens so far (prompt + generated)
    prompt_length: int
    processors: list
    generator: torch.Generator | None
    text: TextStream
    deadline: float | None

    @property
    def generated(self) -> int:
        return self.length - self.prompt_length


class GenerationEngine:
    """Continuous batching over a causal LM (the prefill + step protocol of generation/search.py).

    `submit(prompt_ids, params)` returns a GenerationHandle at once (QueueFull when `max_queue` requests wait);
    `start()` runs the loop in a daemon thread, `step()` runs one iteration by hand (tests), `drain()` stops taking
    requests and waits for the running ones. `lock` is held around every model call, so a pipeline using the same
    model can share it; `tokenizer_lock` around every use of the tokenizer (callers encode under it too)."""

    def __init__(self, model, tokenizer, max_batch_size: int = 8, max_queue: int = 64, eos_token_id=None,
                 prefill_budget: int = 2048, lock: threading.Lock | None = None, metrics=None):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.max_queue = int(max_batch_size), int(max_queue)
        self.prefill_budget = prefill_budget
        self.lock = lock or threading.Lock()
        self.tokenizer_lock = threading.RLock()
        self.metrics = metrics
        eos = eos_token_id if eos_token_id is not None else _generation_eos(model, tokenizer)
        self.eos = None if eos is None else torch.tensor(eos if isinstance(eos, (list, tuple)) else [eos])
        config = model.config
        self.max_positions = config.get("max_position_embeddings") or config.get("n_positions")
        accepted = _forward_parameters(model)
        self.pass_positions = "position_ids" in accepted
        self.keep_last = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        self.cache = SlotCache(_num_layers(model), self.max_batch_size)
        self.rows: list[_Row] = []
        self.waiting: collections.deque[GenerationHandle] = collections.deque()
        self.wakeup = threading.Condition()
        self.accepting = True
        self._thread: threading.Thread | None = None
        self._stop = False
        self.steps = 0
        self.peak_rows = 0  # the most rows that ever decoded together

    # ---- the caller's side
    def submit(self, prompt_ids: list[int], params: SamplingParams, loop=None) -> GenerationHandle:
        if not self.accepting:
            raise EngineStopped("the server is shutting down and takes no new requests")
        if not prompt_ids:
            raise ValueError("the prompt is empty: it needs at least one token")
        handle = GenerationHandle(prompt_ids, params, loop)
        with self.wakeup:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are waiting (max_queue={self.max_queue})")
            self.waiting.append(handle)
            self.wakeup.notify()
        return handle

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def running(self) -> int:
        return len(self.rows)

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="leanformers-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0):
        self.accepting = False
        with self.wakeup:
            self._stop = True
            self.wakeup.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self, timeout: float) -> bool:
        """Refuse new requests; wait (at most `timeout` s) until the waiting and running ones are done."""
        self.accepting = False
        deadline = time.monotonic() + timeout
        while (self.waiting or self.rows) and time.monotonic() < deadline:
            time.sleep(0.02)
        return not (self.waiting or self.rows)

    def _loop(self):
        while True:
            with self.wakeup:
                while not self._stop and not self.waiting and not self.rows:
                    self.wakeup.wait(0.5)
                if self._stop:
                    break
            try:
                self.step()
            except Exception as err:  # a bug must not hang every client: each running request gets the error
                logger.exception("engine step failed")
                for row in self.rows:
                    row.handle.put(Delta(error=f"generation failed: {err}"))
                self.rows.clear()
                self.cache = SlotCache(len(self.cache), self.max_batch_size)
        for row in self.rows:
            row.handle.put(Delta(error="the server stopped"))

    # ---- one iteration: admit, then one decoding step for every row
    def step(self) -> bool:
        """Admit waiting requests (prefill), then one token for every running row; False when there was no work."""
        with torch.inference_mode():  # the cache buffers are inference tensors: every write to them happens here
            admitted = self._admit()
            if not self.rows:
                return admitted
            self._decode()
        self.steps += 1
        return True

    def _admit(self) -> bool:
        """Take waiting requests (up to the free rows and the prefill token budget) and prefill them together."""
        budget, chosen = self.prefill_budget, []
        while self.waiting and len(self.rows) + len(chosen) < self.max_batch_size and (budget > 0 or not chosen):
            with self.wakeup:
                handle = self.waiting.popleft()
            if handle.cancelled:
                continue
            timeout, params = handle.params.timeout, handle.params
            if timeout is not None and time.monotonic() > handle.submitted + timeout:
                handle.put(Delta(error=f"the request waited longer than its timeout ({timeout} s) in the queue",
                                 status=503))
                continue
            length = len(handle.prompt_ids)
            if self.max_positions is not None and length + params.max_new_tokens > self.max_positions:
                handle.put(Delta(error=f"prompt ({length} tokens) + max_tokens ({params.max_new_tokens}) exceeds "
                                       f"the model's context of {self.max_positions} tokens", status=400))
                continue
            budget -= length
            chosen.append(handle)
        if not chosen:
            return False
        try:
            self._prefill(chosen)
        except Exception as err:
            logger.exception("prefill failed")
            for handle in chosen:
                handle.put(Delta(error=f"prefill failed: {err}"))
        return True

    def _prefill(self, handles: list[GenerationHandle]):
        """One forward over the new prompts (left-padded to the longest, as generate() pads a batch), written into
        the next free rows of the cache; then each row's first token. A lone prompt has no padding at all."""
        lengths = [len(h.prompt_ids) for h in handles]
        longest, count = max(lengths), len(handles)
        cache, slot = self.cache, len(self.rows)
        if self.rows:
            cache.reserve(max(0, longest - (cache.end - cache.start)), 1)
        elif cache.capacity >= longest + 1:  # an empty batch starts over at the buffer's beginning
            cache.start, cache.end = 0, longest
        else:
            cache.start = cache.end = 0
            cache.reserve(longest, 1)
        ids = torch.zeros((count, longest), dtype=torch.long)
        mask = torch.zeros((count, longest), dtype=torch.long)
        rows = []
        for i, (handle, length) in enumerate(zip(handles, lengths)):
            params = handle.params
            tokens = torch.zeros((1, length + params.max_new_tokens), dtype=torch.long)
            tokens[0, :length] = torch.tensor(handle.prompt_ids, dtype=torch.long)
            ids[i, longest - length:] = tokens[0, :length]
            mask[i, longest - length:] = 1
            generator = None
            if not params.greedy:
                generator = torch.Generator().manual_seed(params.seed if params.seed is not None
                                                          else torch.seed() % (2 ** 63))
            rows.append(_Row(handle, tokens, length, length, params.processors(length, self.eos), generator,
                             TextStream(self.tokenizer, params.stop, params.skip_special_tokens, self.tokenizer_lock),
                             None if params.timeout is None else handle.submitted + params.timeout))
        kwargs = dict(self.keep_last, input_ids=ids, attention_mask=mask, use_cache=True,
                      past_key_values=cache.prefill_view(slot, count, longest))
        if self.pass_positions:  # as generate(): count only real tokens; padding gets position 1
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
        with self.lock:
            logits = self.model(**kwargs).logits[:, -1, :].float()
        cache.rows += count
        self.rows.extend(rows)
        self.peak_rows = max(self.peak_rows, len(self.rows))
        self._emit(rows, logits)

    def _decode(self):
        cache, rows = self.cache, self.rows
        cache.reserve(0, 1)
        window = cache.end - cache.start + 1
        lengths = torch.tensor([row.length for row in rows])
        input_ids = torch.stack([row.tokens[0, row.length - 1] for row in rows])[:, None]
        mask = (torch.arange(window)[None, :] >= (window - lengths)[:, None]).long()  # (B, window): left padding
        kwargs = dict(self.keep_last, input_ids=input_ids, attention_mask=mask, use_cache=True,
                      past_key_values=cache)
        if self.pass_positions:
            kwargs["position_ids"] = (lengths - 1)[:, None]
        with self.lock:
            logits = self.model(**kwargs).logits[:, -1, :].float()
        cache.advance(1)
        self._emit(rows, logits)

    # ---- sampling, stop conditions, delivery
    def _emit(self, rows: list[_Row], logits: torch.Tensor):
        """Choose each row's next token from its logits row, hand it out, and let finished rows leave."""
        plain = [i for i, row in enumerate(rows) if row.handle.params.greedy and not row.processors]
        chosen = {}
        if plain:
            best = logits[plain].max(dim=-1).indices.tolist()
            chosen = dict(zip(plain, best))
        finished = []
        now = time.monotonic()
        for i, row in enumerate(rows):
            params = row.handle.params
            raw = logits[i:i + 1]
            logprobs = _logprobs(raw, params) if params.logprobs else None
            token = chosen.get(i)
            if token is None:
                context = row.tokens[:, :row.length]
                scores = apply_processors(row.processors, context, raw.clone() if params.logprobs else raw)
                if params.greedy:
                    token = int(scores.max(dim=-1).indices)
                else:
                    token = _sample(scores, row.generator)
            row.tokens[0, row.length] = token
            row.length += 1
            reason = self._finish_reason(row, token, now)
            text = "" if row.text.stopped else row.text.add(token)
            if row.text.stopped:
                reason = "stop"
            elif reason is not None:
                text += row.text.flush()
            if row.handle.first_token_at is None:
                row.handle.first_token_at = now
                if self.metrics is not None:
                    self.metrics.observe_ttft(now - row.handle.submitted)
            entry = None
            if logprobs is not None:
                entry = [TokenLogprob(token, float(logprobs[0][token]), logprobs[1])]
            row.handle.put(Delta(text, [token], entry, reason, row.prompt_length, row.generated))
            if self.metrics is not None:
                self.metrics.generated_tokens += 1
            if reason is not None or row.handle.cancelled:
                finished.append(i)
        offset = len(self.rows) - len(rows)  # `rows` is the tail of self.rows (all of it, or the new ones)
        for i in reversed(finished):
            self._remove(offset + i)

    def _finish_reason(self, row: _Row, token: int, now: float) -> str | None:
        params = row.handle.params
        ended = (not params.ignore_eos and self.eos is not None and token in self.eos.tolist()) \
            or token in params.stop_token_ids
        if ended and row.generated >= params.min_new_tokens:
            return "stop"
        if row.generated >= params.max_new_tokens or (row.deadline is not None and now > row.deadline):
            return "length"
        return None

    def _remove(self, index: int):
        last = len(self.rows) - 1
        if index != last:
            self.cache.move_row(last, index)
            self.rows[index] = self.rows[last]
        self.rows.pop()
        self.cache.rows -= 1
        self.cache.trim(max((row.length - 1 for row in self.rows), default=0))


def _sample(scores: torch.Tensor, generator) -> int:
    """torch.multinomial over softmax(scores) (generate()'s draw); scores that overflowed (a temperature near 0, say)
    fall back to the best token instead of failing the whole batch."""
    probs = torch.softmax(scores, dim=-1)
    if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
        return int(torch.nan_to_num(scores, nan=-torch.inf).max(dim=-1).indices)
    return int(torch.multinomial(probs, 1, generator=generator))


def _logprobs(raw: torch.Tensor, params: SamplingParams):
    """(log-probabilities of the model's distribution (V,), [(token, logprob)] of the top ones)."""
    logprobs = torch.log_softmax(raw[0], dim=-1)
    top = []
    if params.top_logprobs:
        values, indices = torch.topk(logprobs, params.top_logprobs)
        top = list(zip(indices.tolist(), values.tolist()))
    return logprobs, top


def _generation_eos(model, tokenizer):
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    if eos is None:
        eos = model.config.get("eos_token_id")
    return eos if eos is not None else tokenizer.eos_token_id


def _forward_parameters(model) -> frozenset:
    import inspect

    return frozenset(inspect.signature(model.forward).parameters)


def _num_layers(model) -> int:
    config = model.config
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        if config.get(name):
            return int(config.get(name))
    raise ValueError("cannot tell the model's number of layers from its config")


# ---------------------------------------------------------------- micro-batching for pipeline tasks
@dataclasses.dataclass
class _Job:
    items: list
    single: bool
    parameters: dict
    key: str
    future: concurrent.futures.Future


class PipelineBatcher:
    """Requests to one pipeline, run together: the first request waits up to `max_wait` seconds for others with the
    same parameters (at most `max_batch_size` inputs), then one pipeline call over all their inputs (the pipeline
    groups them by length); each request gets its own results, equal to a call with its inputs alone."""

    def __init__(self, pipe, max_batch_size: int = 8, max_queue: int = 64, max_wait: float = 0.005,
                 locks: tuple = (), batchable: bool = True):
        self.pipe, self.max_batch_size, self.max_queue, self.max_wait = pipe, max_batch_size, max_queue, max_wait
        self.locks = locks  # held around each pipeline call (the generation engine's, when it shares the model)
        self.batchable = batchable
        self.jobs: collections.deque[_Job] = collections.deque()
        self.wakeup = threading.Condition()
        self.accepting = True
        self._stop = False
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=f"leanformers-{pipe.task}", daemon=True)
        self._thread.start()

    def submit(self, inputs, parameters: dict) -> concurrent.futures.Future:
        if not self.accepting:
            raise EngineStopped("the server is shutting down and takes no new requests")
        split = self.batchable and isinstance(inputs, list) and not _is_chat(inputs)
        items = list(inputs) if split else [inputs]
        if not items:
            raise ValueError("`inputs` is an empty list")
        key = json.dumps(parameters, sort_keys=True, default=str)
        job = _Job(items, not split, parameters, key, concurrent.futures.Future())
        with self.wakeup:
            if len(self.jobs) >= self.max_queue:
                raise QueueFull(f"{len(self.jobs)} requests are waiting (max_queue={self.max_queue})")
            self.jobs.append(job)
            self.wakeup.notify()
        return job.future

    @property
    def queue_depth(self) -> int:
        return len(self.jobs)

    def stop(self):
        self.accepting = False
        with self.wakeup:
            self._stop = True
            self.wakeup.notify()

    def _loop(self):
        while True:
            with self.wakeup:
                while not self._stop and not self.jobs:
                    self.wakeup.wait(0.5)
                if self._stop and not self.jobs:
                    return
                self.busy = True
            try:
                self._run(self._collect())
            finally:
                self.busy = False

    def _collect(self) -> list[_Job]:
        """The first waiting job and, within max_wait, later ones with the same parameters (up to the batch size)."""
        with self.wakeup:
            first = self.jobs.popleft()
        batch, count = [first], len(first.items)
        if not self.batchable or first.single and not isinstance(first.items[0], (str, dict)):
            return batch
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch_size:
            with self.wakeup:
                match = next((job for job in self.jobs if job.key == first.key
                              and count + len(job.items) <= self.max_batch_size), None)
                if match is not None:
                    self.jobs.remove(match)
                    batch.append(match)
                    count += len(match.items)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.wakeup.wait(left)
        return batch

    def _run(self, batch: list[_Job]):
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        single_call = len(live) == 1 and live[0].single
        try:
            results = self._call([item for job in live for item in job.items], live[0].parameters, single_call)
        except Exception as err:  # noqa: BLE001 - it goes to the caller's future
            if len(live) == 1:
                live[0].future.set_exception(err)
                return
            for job in live:  # someone's input was bad: run each alone so only that request fails
                try:
                    job.future.set_result(self._call(job.items, job.parameters, job.single))
                except Exception as single_err:  # noqa: BLE001 - as above
                    job.future.set_exception(single_err)
            return
        if single_call:
            live[0].future.set_result(results)
            return
        offset = 0
        for job in live:
            part = results[offset:offset + len(job.items)]
            offset += len(job.items)
            job.future.set_result(part[0] if job.single else part)

    def _call(self, items: list, parameters: dict, single: bool):
        with contextlib.ExitStack() as held:
            for lock in self.locks:
                held.enter_context(lock)
            if single:
                return self.pipe(items[0], **parameters)
            return self.pipe(items, batch_size=min(self.max_batch_size, len(items)), **parameters)


def _is_chat(inputs) -> bool:
    return bool(inputs) and all(isinstance(m, dict) and "role" in m for m in inputs)

