"""`leanformers batch TASK --model M --input FILE --output FILE [...]`: run() from the command line.

The task options are the ones of `leanformers TASK` (--top-k, --context, --candidate-labels, --option NAME=VALUE,
...); the summary prints as one JSON line on stdout, the progress bar on stderr (a terminal only; --quiet: none).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..cli import _CALL_OPTIONS, call_options
from . import ENGINES, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leanformers batch", description=(
        "Run a pipeline over every row of a JSON lines / CSV / Parquet file, resumably; one JSON line per row "
        "in OUTPUT, bad rows in OUTPUT.errors.jsonl."))
    parser.add_argument("task", help="a pipeline task, as for `leanformers TASK`")
    parser.add_argument("--model", required=True, help="repo id or folder (on a cluster: readable from every node)")
    parser.add_argument("--input", required=True, help="a .jsonl, .csv or .parquet file")
    parser.add_argument("--output", required=True, help="a .jsonl (or .parquet) file; rerun to resume")
    parser.add_argument("--input-format", choices=["jsonl", "csv", "parquet"], help="default: from the extension")
    parser.add_argument("--column", help="the input column (default: text; question-answering: question,context)")
    parser.add_argument("--columns", help="named input columns, comma-separated: question,context or text,text_pair")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs per model pass (default: 8)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="rows read, run and saved at a time")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="local (default) or ray")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--num-workers", type=int, default=2, help="ray: actors in the pool (default: 2)")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="ray: CPUs (torch threads) per actor")
    parser.add_argument("--tokenizer", help="repo id or folder of the tokenizer (default: the model's)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--dtype", help="float32, float16 or bfloat16")
    for flag, _, kind in _CALL_OPTIONS:
        parser.add_argument(flag, type=kind)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="any other pipeline option, e.g. --option top_k=null (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="start again, replacing OUTPUT and its records")
    return parser


def main(argv=None) -> int:
    """Parse `argv`, run the job, print its summary; returns the exit code (2 with a one-line error)."""
    args = build_parser().parse_args(argv)
    try:
        summary = run(args.task, args.model, args.input, args.output, column=args.column, columns=args.columns,
                      batch_size=args.batch_size, chunk_size=args.chunk_size, engine=args.engine,
                      input_format=args.input_format, options=call_options(args), tokenizer=args.tokenizer,
                      device=args.device, dtype=args.dtype, quiet=args.quiet, overwrite=args.overwrite,
                      ray_address=args.ray_address, num_workers=args.num_workers,
                      cpus_per_worker=args.cpus_per_worker)
    except (ValueError, TypeError, KeyError, OSError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"leanformers batch: error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
