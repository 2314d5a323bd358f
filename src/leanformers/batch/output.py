"""The output of a batch run, written so that a kill at any moment (even SIGKILL) leaves a resumable state.

OUTPUT                 one JSON line per good input row, in input order: {"id": row number, "result": ...}
OUTPUT.errors.jsonl    one JSON line per bad row: {"id": row number, "error": reason}
OUTPUT.progress.json   what is done: rows done, the byte length of both files at that point, the run's signature

Rows are appended in chunks; after each chunk both files are flushed and fsync'ed, then the progress file is
replaced atomically (write a temporary file, fsync, rename). A run killed mid-chunk leaves bytes past the recorded
lengths: the next run cuts them off and carries on at the recorded row, so no row is lost or written twice.
A Parquet OUTPUT is assembled from the finished JSON lines (OUTPUT.part.jsonl) at the end.
"""
from __future__ import annotations

import json
import os
import sys
import time


class ResumableOutput:
    """OUTPUT and its companions; `open()` -> the row to start from, `write()` a chunk, `finish()` -> summary."""

    def __init__(self, output: str, signature: dict, overwrite: bool = False):
        self.path = os.fspath(output)
        self.parquet = self.path.lower().endswith((".parquet", ".pq"))
        self.lines_path = self.path + ".part.jsonl" if self.parquet else self.path
        self.errors_path = self.path + ".errors.jsonl"
        self.state_path = self.path + ".progress.json"
        self.signature = signature
        self.overwrite = overwrite
        self.state = None

    # ---------------------------------------------------------------- start or resume
    def open(self) -> int:
        """Prepare the files; returns the number of input rows already done (0 on a fresh start)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"the output folder {directory!r} does not exist")
        state = self._read_state()
        if state is not None and not self.overwrite and state["signature"] != self.signature:
            changed = sorted(k for k in {**state["signature"], **self.signature}
                             if state["signature"].get(k) != self.signature.get(k))
            raise ValueError(f"{self.path} holds a run with other settings ({', '.join(changed)} differ, see "
                             f"{self.state_path}); rerun with the same ones to resume, or pass overwrite "
                             f"(--overwrite) to start again")
        if state is None and not self.overwrite and os.path.exists(self.path):
            raise ValueError(f"{self.path} exists and is not a resumable batch output (no {self.state_path}); "
                             f"pass overwrite (--overwrite) to replace it")
        if state is None or self.overwrite:
            state = {"signature": self.signature, "rows": 0, "ok": 0, "errors": 0, "output_bytes": 0,
                     "errors_bytes": 0, "done": False}
            self.state = state
            self._save_state()  # first, so that an output file never exists without its progress record
        self.state = state
        if state["done"]:
            return state["rows"]
        for path, size in ((self.lines_path, state["output_bytes"]), (self.errors_path, state["errors_bytes"])):
            with open(path, "ab") as file:  # creates it if needed
                file.truncate(size)  # bytes of a chunk the last run did not finish recording
        return state["rows"]

    @property
    def done(self) -> bool:
        return bool(self.state and self.state["done"])

    # ---------------------------------------------------------------- chunks
    def write(self, first_row: int, results: list, errors: list) -> None:
        """Append one chunk (row `first_row` on): results are JSON texts, errors are reasons ("" for a good row)."""
        good, bad = [], []
        for row, (result, error) in enumerate(zip(results, errors), first_row):
            if error or not result:
                bad.append(json.dumps({"id": row, "error": error or "no result"}, ensure_ascii=False) + "\n")
            else:
                good.append(f'{{"id": {row}, "result": {result}}}\n')
        sizes = []
        for path, chunk in ((self.lines_path, good), (self.errors_path, bad)):
            with open(path, "ab") as file:
                if chunk:
                    file.write("".join(chunk).encode("utf-8"))
                    file.flush()
                    os.fsync(file.fileno())  # on disk before the progress record says so
                sizes.append(file.tell())
        state = self.state
        state.update(rows=first_row + len(results), ok=state["ok"] + len(good), errors=state["errors"] + len(bad),
                     output_bytes=sizes[0], errors_bytes=sizes[1])
        self._save_state()

    def finish(self, seconds: float, started_at: int) -> dict:
        """Close the files, assemble a Parquet output, record the run as done; returns the summary."""
        if not self.state["done"]:
            if self.parquet:
                to_parquet(self.lines_path, self.path)
                os.remove(self.lines_path)
            if self.state["errors"] == 0 and os.path.exists(self.errors_path):
                os.remove(self.errors_path)
            self.state["done"] = True
            self._save_state()
        state = self.state
        done_now = state["rows"] - started_at
        return {"rows": state["rows"], "ok": state["ok"], "errors": state["errors"], "output": self.path,
                "errors_file": self.errors_path if state["errors"] else None, "resumed_at_row": started_at,
                "rows_this_run": done_now, "seconds": round(seconds, 3),
                "rows_per_second": round(done_now / seconds, 1) if seconds > 0 else None}

    # ---------------------------------------------------------------- the progress record
    def _read_state(self):
        if not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path, encoding="utf-8") as file:
                return json.load(file)
        except ValueError:
            raise ValueError(f"{self.state_path} is not readable JSON; pass overwrite (--overwrite) to start again")

    def _save_state(self) -> None:
        temporary = self.state_path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(self.state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.state_path)  # atomic: the record is the old one or the new one, never half


def to_parquet(lines_path: str, path: str, rows_per_group: int = 10_000) -> None:
    """JSON lines {"id", "result"} -> a Parquet file (id int64, result as pyarrow infers it), streamed in groups."""
    from .inputs import _pyarrow_parquet

    parquet = _pyarrow_parquet()
    import pyarrow

    temporary = path + ".tmp"
    writer = None
    with open(lines_path, encoding="utf-8") as file:
        while True:
            rows = [json.loads(line) for _, line in zip(range(rows_per_group), file)]
            if not rows:
                break
            schema = writer.schema if writer is not None else None
            try:
                table = pyarrow.Table.from_pylist(rows, schema=schema)
            except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as err:
                raise ValueError(f"these results do not fit one Parquet schema ({err}); write .jsonl instead") from None
            if writer is None:
                writer = parquet.ParquetWriter(temporary, table.schema)
            writer.write_table(table)
    if writer is None:
        parquet.write_table(pyarrow.table({"id": pyarrow.array([], pyarrow.int64())}), temporary)
    else:
        writer.close()
    os.replace(temporary, path)


class Progress:
    """A one-line progress display on stderr: rows done, percent, rows/s over this run, ETA. Off when disabled."""

    def __init__(self, enabled: bool, total: int | None, start: int, label: str, every: float = 0.5):
        self.enabled, self.total, self.start, self.label, self.every = enabled, total, start, label, every
        self.began = self.shown = time.perf_counter()

    def update(self, rows: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not final and now - self.shown < self.every):
            return
        self.shown = now
        rate = (rows - self.start) / max(now - self.began, 1e-9)
        line = f"{self.label}: {rows:,}"
        if self.total:
            eta = (self.total - rows) / rate if rate > 0 else float("inf")
            line += f"/{self.total:,} rows ({100 * rows / self.total:.1f}%), {rate:,.0f} rows/s, ETA {_clock(eta)}"
        else:
            line += f" rows, {rate:,.0f} rows/s"
        print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
