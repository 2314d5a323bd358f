"""Input files -> streams of row batches, and a row's columns -> the pipeline's input.

Three formats, all read as streams (a file of millions of rows is never held whole):
  JSON lines  one object per line; blank lines are not rows; a line is parsed by the Predictor, so an unreadable
              line is one bad row, not a failed run (the raw lines travel in the column `LINE`, as Ray's read_text)
  CSV         a header row, then rows (Python's csv module: quoted fields may span lines)
  Parquet     pyarrow (the `parquet` extra), read one record batch at a time, only the needed columns
A row's number (its input id) is its 0-based position among the file's rows.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections.abc import Iterator

LINE = "text"  # the column holding a raw JSON line (the name ray.data.read_text gives it)
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}
# tasks whose input is a dict of named texts; the columns given are read into these keys, in this order
INPUT_KEYS = {"question-answering": ("question", "context"), "text-classification": ("text", "text_pair")}


class BadRow(ValueError):
    """A row the pipeline cannot take (unreadable, a column missing or empty); its message is the reason."""


def file_format(path: str, given: str | None = None) -> str:
    """'jsonl', 'csv' or 'parquet', from `given` or the file name's extension."""
    if given is not None:
        if given not in set(FORMATS.values()):
            raise ValueError(f"input format must be one of jsonl, csv, parquet, not {given!r}")
        return given
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot tell the format of {path!r} from its extension; use one of "
                         f"{', '.join(sorted(FORMATS))} or pass the format (--input-format)")
    return FORMATS[ext]


def input_columns(task: str, column: str | None = None, columns=None, options: dict | None = None) -> list[str]:
    """The columns a task reads: `columns` (two-input tasks: in INPUT_KEYS order), else `column`, else the default
    (question-answering: question, context; question-answering with a fixed context option: question; else text)."""
    if columns is not None and column is not None:
        raise ValueError("give either column (one input column) or columns (named input columns), not both")
    if isinstance(columns, str):
        columns = [name.strip() for name in columns.split(",")]
    if columns is not None:
        columns = list(columns)
        if not columns or not all(isinstance(name, str) and name for name in columns):
            raise ValueError(f"columns must be non-empty column names, got {columns!r}")
    elif column is not None:
        columns = [column]
    elif task == "question-answering":
        columns = ["question"] if "context" in (options or {}) else list(INPUT_KEYS[task])
    else:
        columns = ["text"]
    most = 1 if task == "question-answering" and "context" in (options or {}) else len(INPUT_KEYS.get(task, "x"))
    if len(columns) > most or (task == "question-answering" and len(columns) != most):
        wanted = ", ".join(INPUT_KEYS[task][:most]) if task in INPUT_KEYS else "the text"
        raise ValueError(f"the {task} task reads {most} column(s) ({wanted}); got columns {columns}")
    return columns


def pipeline_input(task: str, columns: list[str], row: dict, context: str | None = None):
    """A row (column -> value) -> what the pipeline takes: a text, or a dict of named texts. Raises BadRow."""
    texts = []
    for name in columns:
        if name not in row or row[name] is None:
            raise BadRow(f"missing column {name!r}" + (f" (the row has {sorted(row)[:8]})" if row else ""))
        value = row[name]
        if not isinstance(value, str):
            raise BadRow(f"column {name!r} is a {type(value).__name__}, not a string: {str(value)[:40]!r}")
        if not value.strip():
            raise BadRow(f"column {name!r} is empty")
        texts.append(value)
    if task == "question-answering":
        question, context = (texts[0], context) if context is not None else texts
        return {"question": question, "context": context}
    if len(texts) == 2:
        return dict(zip(INPUT_KEYS[task], texts))
    return texts[0]


def parse_line(line) -> dict:
    """One JSON line -> its object; raises BadRow when it is not JSON or not an object."""
    try:
        row = json.loads(line)
    except ValueError as err:
        raise BadRow(f"unreadable JSON: {err}") from None
    if not isinstance(row, dict):
        raise BadRow(f"a JSON line must be an object with named columns, got a {type(row).__name__}")
    return row


# ---------------------------------------------------------------- streaming readers
def read_batches(path: str, fmt: str, columns: list[str], rows_per_batch: int, skip: int = 0) -> Iterator[dict]:
    """Batches of up to `rows_per_batch` rows as columns (name -> list), from row `skip` on."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path!r} does not exist")
    reader = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_batches}[fmt]
    if fmt == "parquet":
        yield from reader(path, columns, rows_per_batch, skip)
        return
    rows = itertools.islice(reader(path, columns), skip, None)
    names = [LINE] if fmt == "jsonl" else columns
    while True:
        chunk = list(itertools.islice(rows, rows_per_batch))
        if not chunk:
            return
        yield {name: [row[i] for row in chunk] for i, name in enumerate(names)}


def _jsonl_rows(path: str, columns) -> Iterator[tuple]:
    with open(path, "rb") as file:
        for raw in file:
            line = raw.decode("utf-8", errors="replace")
            if line.strip():
                yield (line.rstrip("\r\n"),)


def _csv_rows(path: str, columns) -> Iterator[tuple]:
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        missing = [name for name in columns if name not in (header or [])]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} in the CSV header {header}")
        where = [header.index(name) for name in columns]
        for record in reader:
            if record:  # an empty line is not a row (as pyarrow's CSV reader)
                yield tuple(record[i] if i < len(record) else None for i in where)


def _parquet_batches(path: str, columns, rows_per_batch: int, skip: int) -> Iterator[dict]:
    parquet = _pyarrow_parquet()
    file = parquet.ParquetFile(path)
    missing = [name for name in columns if name not in file.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r} in the Parquet schema {file.schema_arrow.names}")
    for batch in file.iter_batches(batch_size=rows_per_batch, columns=columns):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip).to_pydict()
        skip = 0


def count_rows(path: str, fmt: str) -> int:
    """The number of rows in the file (a quick pass for text formats; the footer for Parquet)."""
    if fmt == "parquet":
        return _pyarrow_parquet().ParquetFile(path).metadata.num_rows
    if fmt == "jsonl":
        with open(path, "rb") as file:
            return sum(1 for raw in file if raw.strip())
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        return max(0, sum(1 for record in csv.reader(file) if record) - 1)


def check_columns(path: str, fmt: str, columns: list[str]) -> None:
    """A CSV header or Parquet schema without a needed column, or a JSON array given as JSON lines, is the caller's
    mistake: say so before any work (a JSON lines row without the column is that row's error, found when read)."""
    if fmt == "jsonl":
        with open(path, "rb") as file:
            start = file.read(4096).lstrip()
        if start.startswith(b"["):
            raise ValueError(f"{path} holds a JSON array; batch reads JSON lines (one object per line): "
                             f"convert it, e.g. jq -c '.[]' {os.path.basename(path)} > rows.jsonl")
    elif fmt == "csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as file:
            header = next(csv.reader(io.StringIO(file.readline())), [])
        missing = [name for name in columns if name not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} in the CSV header {header}")
    elif fmt == "parquet":
        names = _pyarrow_parquet().ParquetFile(path).schema_arrow.names
        missing = [name for name in columns if name not in names]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} in the Parquet schema {names}")


def _pyarrow_parquet():
    try:
        from pyarrow import parquet
    except ImportError:
        raise ImportError("Parquet files need pyarrow: pip install 'leanformers[parquet]'") from None
    return parquet
