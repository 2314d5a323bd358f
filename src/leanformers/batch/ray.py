"""The Ray engine: ray.data reads the file, an actor pool runs the Predictor, the driver writes the output.

    read_text (JSON lines, parsed by the Predictor) | read_csv | read_parquet
      -> map_batches(Predictor, ActorPoolStrategy(size=num_workers), num_cpus per actor, batch_size=chunk_size)
      -> iter_batches on the driver, in input order (preserve_order), into the same resumable output as the local
         engine, so both engines write the same rows and values.
Each actor loads the model once: the model folder must be readable from every node (a shared path or each node's
Hugging Face cache). On a resumed run the driver skips the rows already written; the workers compute them again
(Ray Data has no cheap "start at row N"), so resuming saves the writing, not that compute.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

from .inputs import LINE
from .predictor import Predictor


def ray_results(job, start: int) -> Iterator[dict]:
    """{"result": [...], "error": [...]} per output block, rows in input order, from input row `start` on."""
    try:
        import ray
    except ImportError:
        raise ImportError("the ray engine needs Ray Data: pip install 'leanformers[ray]'") from None

    started_here = _connect(job.ray_address, job.num_workers * job.cpus_per_worker)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come back in input order: ids are their positions
        context.enable_progress_bars = False  # the engine shows its own rows/s and ETA
        # Ray 2.60's newer Parquet reader first lists files in a task that takes 1 CPU, which actors holding every
        # CPU starve (seen: a 2-CPU Ray waits forever); the classic reader has no such step and honours READ_ARGS
        context.use_datasource_v2 = False
        dataset = _read(ray, job)
        dataset = dataset.map_batches(
            Predictor, batch_size=job.chunk_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=job.num_workers), num_cpus=job.cpus_per_worker,
            fn_constructor_kwargs=dict(task=job.task, model=job.model, columns=job.columns, options=job.options,
                                       json_lines=job.format == "jsonl", batch_size=job.batch_size,
                                       threads=job.cpus_per_worker, **job.pipeline_kwargs))
        skip = start
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            results, errors = batch["result"].tolist(), batch["error"].tolist()
            if skip >= len(results):
                skip -= len(results)
                continue
            yield {"result": results[skip:], "error": errors[skip:]}
            skip = 0
    finally:
        if started_here:
            ray.shutdown()


def _connect(address: str | None, cpus: int) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=max(cpus, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    return True


# reading is light next to the model: read tasks ask for no CPU, so that actors holding every CPU of the cluster
# (2 workers on 2 CPUs) do not starve the reads that feed them (with Ray's default of 1 CPU, or even 0.25, the run
# waits forever: seen on a 2-CPU local Ray); Ray Data still bounds them by its object-store budget
READ_ARGS = {"num_cpus": 0}


def _read(ray, job):
    if job.format == "jsonl":  # raw lines: a line that is not JSON is one bad row, as in the local engine
        dataset = ray.data.read_text(job.input, drop_empty_lines=True, **READ_ARGS)
        return dataset.select_columns([LINE])
    if job.format == "csv":
        import pyarrow
        import pyarrow.csv

        # the needed columns as strings, as Python's csv gives them ("007" stays "007", "" stays "")
        convert = pyarrow.csv.ConvertOptions(include_columns=job.columns, include_missing_columns=True,
                                             column_types={name: pyarrow.string() for name in job.columns},
                                             strings_can_be_null=False)
        return ray.data.read_csv(job.input, convert_options=convert, **READ_ARGS)
    return ray.data.read_parquet(job.input, columns=job.columns, **READ_ARGS)
