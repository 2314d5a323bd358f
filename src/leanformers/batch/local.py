"""The local engine (the default): stream the input in chunks through one Predictor in this process.

A chunk of rows is read, run through the pipeline (which sorts it by length into `batch_size` groups), and its
results are written and recorded before the next chunk is read: memory holds one chunk, whatever the file's size.
"""
from __future__ import annotations

from collections.abc import Iterator

from .inputs import read_batches
from .predictor import Predictor


def local_results(job, start: int) -> Iterator[dict]:
    """{"result": [...], "error": [...]} per chunk of `job.chunk_size` rows, from input row `start` on."""
    predictor = Predictor(job.task, job.model, columns=job.columns, options=job.options,
                          json_lines=job.format == "jsonl", batch_size=job.batch_size, **job.pipeline_kwargs)
    for batch in read_batches(job.input, job.format, job.columns, job.chunk_size, skip=start):
        yield predictor(batch)
