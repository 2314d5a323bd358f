"""Predictor: the one callable both engines map over batches of rows (Ray Data's callable-class style).

Built once per process (the local engine) or once per actor (Ray): it loads the pipeline then, and each call maps a
batch of rows (column -> list or numpy array) to {"result": [JSON text], "error": [reason]}, one entry per input
row, in order; a good row's error and a bad row's result are "". Both columns are strings whatever the task, so that
any nested result travels through Arrow (Ray's blocks) as one string column, and an all-good batch is not an
all-null column (which Arrow would turn into NaNs).
"""
from __future__ import annotations

import json

from .inputs import LINE, BadRow, input_columns, parse_line, pipeline_input

# a list of one input is answered as that one input by these pipelines (as transformers does): wrap it back
_ONE_UNWRAPPED = {"question-answering", "fill-mask"}


class Predictor:
    """Loads `pipeline(task, model, **pipeline_kwargs)` once; `predictor(batch)` -> results and errors per row.

    task, model     as pipeline(); `options` are the pipeline's call options (top_k, candidate_labels, ...), checked
                    once here; question-answering may take a fixed `context` (the questions are then the column)
    columns         the columns read (see inputs.input_columns); json_lines=True: the batch holds raw JSON lines in
                    the column `LINE` instead, parsed here so that an unreadable line is a bad row, not a failure
    threads         torch threads for this process (a Ray actor gets as many as its num_cpus)
    """

    def __init__(self, task: str, model, *, columns=None, options: dict | None = None, json_lines: bool = False,
                 batch_size: int = 8, threads: int | None = None, **pipeline_kwargs):
        from ..pipelines import pipeline, resolve_task

        self.task = resolve_task(task)
        options = dict(options or {})
        self.context = options.pop("context", None) if self.task == "question-answering" else None
        self.columns = input_columns(self.task, columns=columns, options={"context": self.context}
                                     if self.context is not None else {})
        self.json_lines = json_lines
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        # call options given at construction are checked here, once, and are the defaults of every call
        self.pipe = pipeline(task, model=model, batch_size=batch_size, **pipeline_kwargs, **options)

    def __call__(self, batch: dict) -> dict:
        """A batch of rows (column -> values) -> {"result": [JSON text], "error": [reason]}, one entry per row."""
        rows = _rows(batch, [LINE] if self.json_lines else self.columns)
        errors = [""] * len(rows)
        good = []  # (row index, pipeline input)
        for index, row in enumerate(rows):
            try:
                if self.json_lines:
                    row = parse_line(row[LINE])
                good.append((index, pipeline_input(self.task, self.columns, row, self.context)))
            except BadRow as err:
                errors[index] = str(err)
        results = [""] * len(rows)
        for index, result in self.predict(good, errors):
            results[index] = json.dumps(plain(result), ensure_ascii=False)
        return {"result": results, "error": errors}

    def predict(self, good: list[tuple[int, object]], errors: list) -> list[tuple[int, object]]:
        """(row index, result) of the good rows: the pipeline over all of them at once (its length-sorted batches);
        if that fails, row by row, so that only the rows at fault become errors (reason in `errors[index]`)."""
        if not good:
            return []
        try:
            return list(zip([index for index, _ in good], self._call([item for _, item in good])))
        except Exception:  # noqa: BLE001 - which row failed is found below, and each failure recorded with it
            return self._one_by_one(good, errors)

    def _one_by_one(self, good: list[tuple[int, object]], errors: list) -> list[tuple[int, object]]:
        results = []
        for index, item in good:
            try:
                results.append((index, self._call([item])[0]))
            except Exception as err:  # noqa: BLE001 - a bad row must not stop a run of millions
                errors[index] = f"{type(err).__name__}: {err}"
        return results

    def _call(self, items: list) -> list:
        results = self.pipe(items)
        return [results] if len(items) == 1 and self.task in _ONE_UNWRAPPED else results


def _rows(batch: dict, columns: list[str]) -> list[dict]:
    """Columns (lists or numpy arrays; a missing column reads as None) -> one dict per row, plain Python values."""
    present = {name: _plain_list(batch[name]) for name in columns if name in batch}
    size = len(next(iter(present.values()))) if present else len(next(iter(batch.values()), []))
    return [{name: values[i] for name, values in present.items()} for i in range(size)]


def _plain_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def plain(value):
    """numpy scalars and arrays in a pipeline result -> JSON-friendly Python values."""
    if isinstance(value, dict):
        return {key: plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
