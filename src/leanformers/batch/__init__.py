"""Batch inference over files: `run(task, model, input, output)` / `leanformers batch TASK ...`.

Reads JSON lines, CSV or Parquet as a stream, runs a pipeline over it in chunks and writes one JSON line per good row
({"id": row number, "result": the pipeline's result}) and one per bad row to OUTPUT.errors.jsonl, resumably (see
output.py). Two engines share one callable, `Predictor`: "local" (this process) and "ray" (a Ray Data actor pool,
`leanformers[ray]`; Ray is imported only then).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from .inputs import check_columns, count_rows, file_format, input_columns
from .output import Progress, ResumableOutput
from .predictor import Predictor

ENGINES = ("local", "ray")


@dataclasses.dataclass
class Job:
    """One batch run's settings, as the engines read them."""
    task: str
    model: str
    input: str
    format: str
    columns: list
    options: dict
    batch_size: int
    chunk_size: int
    pipeline_kwargs: dict
    ray_address: str | None = None
    num_workers: int = 2
    cpus_per_worker: int = 1


def run(task: str, model, input: str, output: str, *, column: str | None = None, columns=None,
        batch_size: int = 8, chunk_size: int | None = None, engine: str = "local", input_format: str | None = None,
        options: dict | None = None, tokenizer=None, device=None, dtype=None, quiet: bool = False,
        overwrite: bool = False, ray_address: str | None = None, num_workers: int = 2,
        cpus_per_worker: int = 1) -> dict:
    """Run `pipeline(task, model)` over every row of `input`, writing `output` (.jsonl, or .parquet); resumes an
    interrupted run with the same arguments. Returns the summary: rows, ok, errors, output, errors_file, rows/s.

    column / columns   the input column(s) (default "text"; question-answering: "question", "context"; text pairs:
                       columns=["text", "text_pair"]); options: the pipeline's call options (top_k, ...)
    batch_size         inputs per model pass; chunk_size: rows read, run and recorded at a time (default 1024)
    engine             "local" or "ray" (ray_address or RAY_ADDRESS joins a cluster; else a local Ray is started,
                       num_workers actors of cpus_per_worker CPUs each)
    """
    from ..pipelines import resolve_task

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size or 1), ("num_workers", num_workers),
                        ("cpus_per_worker", cpus_per_worker)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, not {value!r}")
    task = resolve_task(task)
    options = dict(options or {})
    input = os.path.abspath(os.fspath(input))
    if not os.path.isfile(input):
        raise FileNotFoundError(f"input file {input!r} does not exist")
    fmt = file_format(input, input_format)
    selected = input_columns(task, column, columns, options)
    check_columns(input, fmt, selected)
    if isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
        model = os.path.abspath(model)  # Ray workers may start elsewhere
    pipeline_kwargs = {k: v for k, v in (("tokenizer", tokenizer), ("device", device), ("dtype", dtype))
                       if v is not None}
    job = Job(task, model, input, fmt, selected, options, batch_size, chunk_size or 1024, pipeline_kwargs,
              ray_address, num_workers, cpus_per_worker)
    stat = os.stat(input)
    signature = {"task": task, "model": str(model), "input": input, "input_size": stat.st_size,
                 "input_mtime_ns": stat.st_mtime_ns, "columns": selected, "options": options,
                 "pipeline": {k: str(v) for k, v in pipeline_kwargs.items()}}
    out = ResumableOutput(output, signature, overwrite)
    start = out.open()
    began = time.perf_counter()
    if not out.done:
        _run_chunks(job, engine, out, start, quiet)
    return out.finish(time.perf_counter() - began, start)


def _run_chunks(job: Job, engine: str, out: ResumableOutput, start: int, quiet: bool) -> None:
    show = not quiet and sys.stderr.isatty()
    progress = Progress(show, count_rows(job.input, job.format) if show else None, start, job.task)
    if engine == "ray":
        from .ray import ray_results as results
    else:
        from .local import local_results as results
    row = start
    for chunk in results(job, start):
        out.write(row, chunk["result"], chunk["error"])
        row += len(chunk["result"])
        progress.update(row)
    progress.update(row, final=True)


__all__ = ["ENGINES", "Job", "Predictor", "run"]
