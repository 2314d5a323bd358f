"""Pipeline: inputs -> windows of token ids -> batched model passes -> task results.

Every task is three steps, as in transformers, but batched across inputs:
  encode(items, params)          tokenize all inputs in one tokenizer call; each input becomes one or more windows
                                 (a long text split with a stride, a QA context in spans, a zero-shot label pair)
  run the windows                sorted by length, grouped `batch_size` inputs' worth at a time, padded only to the
                                 longest window of their group, one model pass per group under torch.inference_mode
  postprocess(item, windows, params)   per input, with that input's windows and their (unpadded) outputs
Results come back in input order whatever the batching, and equal a run with batch_size=1.
"""
from __future__ import annotations

import copy
import itertools
import math
import sys
import types

import numpy as np

LARGE_INTEGER = int(1e20)  # tokenizers store "no maximum length" as 1e30


class Window(dict):
    """One model input: token lists (input_ids, token_type_ids) plus what postprocess needs (encoding, ...).

    After the pass, `window.outputs` holds this window's outputs with padding cut away, as numpy arrays."""
    outputs: dict


class Pipeline:
    task = ""
    heads: tuple[str, ...] = ()        # model heads (modeling.heads.TASKS keys) this task can use; () = any
    output_keys: tuple[str, ...] = ("logits",)

    def __init__(self, model, tokenizer=None, task: str | None = None, device=None, dtype=None, batch_size: int = 1,
                 progress: bool = False, **kwargs):
        self.model = model
        self.tokenizer = tokenizer
        self.task = task or self.task
        self.batch_size = _positive_int("batch_size", 1 if batch_size is None else batch_size)
        self.progress = progress
        self._check_head()
        if dtype is not None:
            self.model.to(_torch_dtype(dtype))
        if device is not None:
            self.model.to(_torch_device(device))
        self.model.eval()
        from ..modeling import packed
        from ..modeling.model import PreTrainedModel

        if isinstance(self.model, PreTrainedModel):  # passes of 4-256 rows (a sentence, an input's label pairs)
            packed.enable(self.model)                # then multiply by weights packed once, not on every call
        self._defaults = dict(kwargs)
        self.parameters(**self._defaults)  # bad construction-time options fail here, not at the first call

    # ---------------------------------------------------------------- what each task defines
    def parameters(self, **kwargs) -> dict:
        """Check and resolve call options; unknown options are an error naming them."""
        if kwargs:
            raise TypeError(f"{self.task} pipeline got unexpected argument(s): {', '.join(sorted(kwargs))}")
        return {}

    def encode(self, items: list, params: dict) -> list[list[Window]]:
        raise NotImplementedError

    def postprocess(self, item, windows: list[Window], params: dict):
        raise NotImplementedError

    # ---------------------------------------------------------------- calling
    def __call__(self, inputs, *, batch_size=None, num_workers=None, **kwargs):
        if batch_size is not None:  # as transformers, a call may set its own batch size (num_workers: no workers here)
            call = copy.copy(self)
            call.batch_size = _positive_int("batch_size", batch_size)
            return Pipeline.__call__(call, inputs, **kwargs)  # not call(): a subclass wrapper already ran
        params = self.parameters(**{**self._defaults, **kwargs})
        if isinstance(inputs, types.GeneratorType) or _is_dataset(inputs):
            return self._stream(iter(inputs), params)
        if isinstance(inputs, (list, tuple)):
            return self.run(list(inputs), params)
        return self.run([inputs], params)[0]

    def _stream(self, inputs, params):
        """Results of a generator, chunk by chunk: a chunk is batched like a list, results yielded in order."""
        chunk_size = max(self.batch_size * 8, 64)
        while True:
            chunk = list(itertools.islice(inputs, chunk_size))
            if not chunk:
                return
            yield from self.run(chunk, params)

    def run(self, items: list, params: dict) -> list:
        if not items:
            return []
        windows = self.encode(items, params)
        self.run_windows([w for item_windows in windows for w in item_windows])
        return [self.postprocess(item, item_windows, params) for item, item_windows in zip(items, windows)]

    # ---------------------------------------------------------------- the batched model passes
    def run_windows(self, windows: list[Window]) -> None:
        """Fill each window's `.outputs`, running groups of windows of similar length together."""
        if not windows:
            return
        import torch

        # an input's windows (QA spans, zero-shot label pairs) always share a pass; batch_size counts inputs
        per_item = math.ceil(len(windows) / max(1, self._items_hint(windows)))
        group_size = self.batch_size * per_item
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i]["input_ids"]))
        cuts = least_padding_cuts([len(windows[i]["input_ids"]) for i in order], group_size)
        groups = [order[start:end] for start, end in zip(cuts, cuts[1:])]
        with torch.inference_mode():
            for group in _progress(groups, self.progress, self.task):
                batch = [windows[i] for i in group]
                for window, outputs in zip(batch, self.forward(batch)):
                    window.outputs = outputs

    def _items_hint(self, windows) -> int:
        return len({w.get("item", i) for i, w in enumerate(windows)})

    def forward(self, batch: list[Window]) -> list[dict]:
        """One model pass over a group of windows -> each window's outputs (numpy, padding cut away)."""
        inputs = self.model_inputs(batch)
        outputs = self.model(**inputs)
        return split_rows({key: outputs[key] for key in self.output_keys}, [len(w["input_ids"]) for w in batch])

    def model_inputs(self, batch: list[Window]) -> dict:
        """Right-padded (B, T) tensors: input_ids, attention_mask and token_type_ids where the model takes them."""
        import torch

        length = max(len(w["input_ids"]) for w in batch)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        types_ = torch.zeros((len(batch), length), dtype=torch.long) if self.takes_token_types() else None
        for row, window in enumerate(batch):
            n = len(window["input_ids"])
            ids[row, :n] = torch.as_tensor(window["input_ids"])
            mask[row, :n] = 1
            if types_ is not None and window.get("token_type_ids") is not None:
                types_[row, :n] = torch.as_tensor(window["token_type_ids"])
        inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if types_ is not None:
            inputs["token_type_ids"] = types_.to(self.device)
        return inputs

    def takes_token_types(self) -> bool:
        spec = getattr(self.model, "spec", None)
        return bool(spec is not None and spec.token_types and "token_type_ids" in self.tokenizer.model_input_names)

    # ---------------------------------------------------------------- helpers for tasks
    @property
    def device(self):
        return self.model.device

    @property
    def config(self):
        return self.model.config

    def max_length(self) -> int | None:
        """The longest input the model takes: the smaller of the tokenizer's model_max_length and the position table."""
        limits = [int(self.tokenizer.model_max_length)] if self.tokenizer.model_max_length < LARGE_INTEGER else []
        positions = self.config.get("max_position_embeddings")
        spec = getattr(self.model, "spec", None)
        if positions is not None and spec is not None and spec.position in ("learned", "sinusoidal"):
            # RoBERTa-style positions start after the padding index
            limits.append(positions - (self.config.get("pad_token_id", 0) + 1 if spec.positions_from_padding else 0))
        return min(limits) if limits else None

    def check_lengths(self, windows: list[Window], hint: str) -> None:
        limit = self.max_length()
        for window in windows:
            if limit is not None and len(window["input_ids"]) > limit:
                raise ValueError(f"an input has {len(window['input_ids'])} tokens but the model takes at most {limit}; "
                                 f"{hint}")

    def _check_head(self) -> None:
        head = getattr(self.model, "task", None)
        if self.heads and head not in self.heads:
            from ..modeling.heads import TASKS

            wanted = " or ".join(f"a *{TASKS[h]} model" for h in self.heads)
            raise ValueError(f"the {self.task} pipeline needs {wanted}, but got {type(self.model).__name__} "
                             f"(head: {head}); load it with the matching AutoModelFor* class")

    def __repr__(self):
        return (f"{type(self).__name__}(task={self.task!r}, model={type(self.model).__name__}, "
                f"batch_size={self.batch_size})")


# ---------------------------------------------------------------- small shared functions
PASS_COST = 32  # a model pass's fixed cost, in padded tokens' worth of compute (so groups do not split needlessly)


def least_padding_cuts(lengths: list[int], most: int) -> list[int]:
    """Lengths sorted longest first -> group boundaries [0, ..., n] of at most `most` rows each that minimise the
    padded tokens computed (rows x the group's longest) plus PASS_COST per pass. Dynamic programming, O(n * most).

    A fixed split of a mixed-length list pads each group to its first row: ~25% waste on real sentences; this
    finds, e.g., a small group for the few long rows and full groups for the many short ones."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: the cost of rows [0, j)
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - most), end):
            cost = best[start] + (end - start) * lengths[start] + PASS_COST
            if cost < best[end]:
                best[end], cut[end] = cost, start
    bounds = [n]
    while bounds[-1] > 0:
        bounds.append(cut[bounds[-1]])
    return bounds[::-1]


def split_rows(outputs: dict, lengths: list[int]) -> list[dict]:
    """Batched outputs -> one dict per row; per-token outputs (B, T, ...) are cut to each row's real length."""
    arrays = {key: value.float().cpu().numpy() for key, value in outputs.items()}
    padded = max(lengths)
    rows = []
    for row, length in enumerate(lengths):
        rows.append({key: (value[row, :length] if value.ndim >= 2 and value.shape[1] == padded else value[row])
                     for key, value in arrays.items()})
    return rows


def softmax(x: np.ndarray) -> np.ndarray:
    """transformers' numpy softmax over the last axis (same operations, so the same float32 numbers)."""
    maxes = np.max(x, axis=-1, keepdims=True)
    shifted_exp = np.exp(x - maxes)
    return shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def check_text(value, what: str = "text", allow_empty: bool = False) -> str:
    """`value` if it is a str (non-blank unless `allow_empty`, where transformers runs an empty text as it is)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__} ({str(value)[:60]!r})")
    if not allow_empty and not value.strip():
        raise ValueError(f"{what} is empty; give a non-empty string")
    return value


def windows_from(encoding_batch, keys=("input_ids", "token_type_ids")) -> list[Window]:
    """A BatchEncoding (lists, one row per window) -> Windows holding each row's lists and its Encoding."""
    rows = len(encoding_batch["input_ids"])
    windows = []
    for row in range(rows):
        window = Window({key: encoding_batch[key][row] for key in keys if key in encoding_batch})
        window["encoding"] = encoding_batch.encodings[row] if encoding_batch.encodings else None
        windows.append(window)
    return windows


def group_by_item(windows: list[Window], sample_of: list[int], n_items: int) -> list[list[Window]]:
    grouped = [[] for _ in range(n_items)]
    for window, item in zip(windows, sample_of):
        window["item"] = item
        grouped[item].append(window)
    return grouped


def _positive_int(name, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
    return value


def _torch_dtype(dtype):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"dtype must be a torch dtype or one of {sorted(names)}, not {dtype!r}")
    return names[dtype]


def _torch_device(device):
    import torch

    if isinstance(device, int) and not isinstance(device, bool):
        if device < 0 or not torch.cuda.is_available():  # transformers falls back to the CPU for an int device
            return torch.device("cpu")
        device = torch.device("cuda", device)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be an int (-1 = cpu), a torch.device or a string like 'cpu', 'cuda:0'; "
                         f"got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} asks for a CUDA GPU, but this torch ({torch.__version__}) has no "
                         "CUDA device available; use device='cpu' (or device=-1)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _is_dataset(inputs) -> bool:
    """torch Datasets and other iterables that are not lists, strings or dicts stream like generators."""
    return not isinstance(inputs, (str, bytes, dict, list, tuple)) and hasattr(inputs, "__iter__") \
        and not hasattr(inputs, "shape")


def _progress(groups, enabled: bool, task: str):
    if not enabled:
        return groups
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _plain_progress(groups, task)
    return tqdm(groups, desc=task, unit="batch")


def _plain_progress(groups, task):
    for done, group in enumerate(groups, 1):
        yield group
        print(f"\r{task}: {done}/{len(groups)} batches", end="\n" if done == len(groups) else "", file=sys.stderr)
