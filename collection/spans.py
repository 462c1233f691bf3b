"""Publishing: the Spark job's output becomes the spans the modeling pipeline reads, and their manifest.

The last step of a collection run (collection/__init__.py). For each span K the
job wrote (JOB/sessions/_span=K/), publish() writes SPANS/span-K/sessions.parquet
in exactly the modeling table's schema (data/generator.py SESSION_SCHEMA), rows
sorted by session_id, and then records the span in SPANS/manifest.json:

  {"format": 1,
   "spans": {"K": {"span", "date", "rows", "file", "file_sha256",
                   "content_fingerprint", "watermarks", "claims_complete",
                   "rules_sha256", "rule_counts"}},
   "runs": [{"run_id", "date_from", "date_to", "total", "watermarks"}]}

  content_fingerprint  sha256 of the span's rows, sorted by session_id, as one
                       Arrow IPC stream in SESSION_SCHEMA: the same sessions give
                       the same fingerprint whichever writer wrote the file;
  watermarks           the newest upload and the newest claim submission the
                       run saw (ISO 8601, UTC);
  claims_complete      whether the newest claim seen was submitted at least
                       max_claim_delay_days after the span's day, so that no
                       claim of the span's sessions can still arrive;
  rule_counts          what each rule did to the span (collection/job.py);
  runs                 one entry per collected date range, its run-wide counts
                       (orphan claims belong to no span); run_id is the range.

The manifest holds no clock time and no random id, so collecting the same day
from the same sources twice gives identical files and an identical manifest. A
span whose content did not change is not rewritten: its file, and its
modification time, stay as they were (ExampleGen's fingerprint of the input
includes modification times, so unchanged spans keep the modeling pipeline's
cache valid).

Every file is written under a temporary name beside its final one and moved
into place; a move replaces one file whole (a rename locally, one object on
Cloud Storage). A run that fails before publishing leaves the spans and the
manifest as they were; one killed between a span and the manifest leaves a span
whose file_sha256 no longer matches, which check_spans() reports and the next
run repairs. Paths may be local or gs:// URIs (pyarrow.fs).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import posixpath
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from data.generator import SESSION_SCHEMA, SPAN_FILE_NAME

__all__ = ["MANIFEST_NAME", "PublishError", "Published", "publish", "read_manifest", "check_spans",
           "content_fingerprint", "main"]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
JOB_COMPLETION_MARKER = "rule_counts.json"
_SPAN_PARTITION = "_span="


class PublishError(Exception):
    """The job's output cannot be published; the message says why and what to do."""


@dataclass(frozen=True)
class Published:
    """What one publish() did."""

    manifest: dict[str, Any]
    written: tuple[int, ...]      # spans whose file was (re)written
    unchanged: tuple[int, ...]    # spans whose content was already published

    @property
    def spans(self) -> tuple[int, ...]:
        return tuple(sorted(self.written + self.unchanged))


def publish(job_dir: str, spans_dir: str) -> Published:
    """Publishes the spans of a finished job run in job_dir into spans_dir; returns what it did."""
    job_fs, job_root = _filesystem(job_dir)
    counts = _read_json(job_fs, _join(job_root, JOB_COMPLETION_MARKER))
    if counts is None:
        raise PublishError(f"{job_dir} holds no finished collection job ({JOB_COMPLETION_MARKER} is missing): "
                           f"the job failed or is still running, so nothing was published. Run the collection again.")
    spans_fs, spans_root = _filesystem(spans_dir)
    spans_fs.create_dir(spans_root, recursive=True)
    manifest_path = _join(spans_root, MANIFEST_NAME)
    manifest = _read_json(spans_fs, manifest_path) or {"format": MANIFEST_FORMAT, "spans": {}, "runs": []}
    if manifest.get("format") != MANIFEST_FORMAT:
        raise PublishError(f"{manifest_path} has manifest format {manifest.get('format')!r}, this repairml "
                           f"writes format {MANIFEST_FORMAT}; move the old spans away or collect into another folder")

    rules = counts.get("rules", {})
    rules_sha256 = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()
    watermarks = counts.get("watermarks", {})
    max_delay = int(rules.get("max_claim_delay_days", 0))
    written, unchanged = [], []
    for span, files in sorted(_job_spans(job_fs, job_root).items()):
        table = _span_table(job_fs, files)
        day = _span_day(table, span, files[0])
        fingerprint = content_fingerprint(table)
        relative = f"span-{span}/{SPAN_FILE_NAME}"
        target = _join(spans_root, relative)
        previous = manifest["spans"].get(str(span), {})
        if previous.get("content_fingerprint") == fingerprint and _sha256(spans_fs, target) == previous.get(
                "file_sha256"):
            unchanged.append(span)
            file_sha256 = previous["file_sha256"]
        else:
            file_sha256 = _write_parquet(spans_fs, target, table)
            written.append(span)
        manifest["spans"][str(span)] = {
            "span": span,
            "date": day,
            "rows": table.num_rows,
            "file": relative,
            "file_sha256": file_sha256,
            "content_fingerprint": fingerprint,
            "watermarks": watermarks,
            "claims_complete": _claims_complete(day, watermarks.get("claims_max_submitted_ts"), max_delay),
            "rules_sha256": rules_sha256,
            "rule_counts": counts.get("days", {}).get(day, {}),
        }
    run = {"run_id": f"{counts['date_from']}..{counts['date_to']}", "date_from": counts["date_from"],
           "date_to": counts["date_to"], "total": counts.get("total", {}), "watermarks": watermarks}
    manifest["runs"] = [r for r in manifest.get("runs", []) if r.get("run_id") != run["run_id"]] + [run]
    manifest["runs"].sort(key=lambda r: (r["date_from"], r["date_to"]))
    manifest["spans"] = dict(sorted(manifest["spans"].items(), key=lambda item: int(item[0])))
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    if _read_bytes(spans_fs, manifest_path) != text:  # an identical manifest is left as it is, mtime too
        _write_bytes(spans_fs, manifest_path, text)
    return Published(manifest=manifest, written=tuple(written), unchanged=tuple(unchanged))


def read_manifest(spans_dir: str) -> dict[str, Any] | None:
    """The manifest of spans_dir, or None when nothing was collected there."""
    fs, root = _filesystem(spans_dir)
    return _read_json(fs, _join(root, MANIFEST_NAME))


def check_spans(spans_dir: str) -> list[str]:
    """The problems of spans_dir's published spans: missing files, or files the manifest does not describe."""
    manifest = read_manifest(spans_dir)
    if manifest is None:
        return [f"{spans_dir} has no {MANIFEST_NAME}: nothing was collected there"]
    fs, root = _filesystem(spans_dir)
    problems = []
    for key, entry in manifest["spans"].items():
        actual = _sha256(fs, _join(root, entry["file"]))
        if actual is None:
            problems.append(f"span {key} ({entry['date']}): {entry['file']} is missing")
        elif actual != entry["file_sha256"]:
            problems.append(f"span {key} ({entry['date']}): {entry['file']} is not the file the manifest "
                            f"records (its sha256 differs); collect {entry['date']} again")
    return problems


def content_fingerprint(table: pa.Table) -> str:
    """sha256 of the rows in SESSION_SCHEMA, sorted by session_id, as one Arrow IPC stream."""
    canonical = table.cast(SESSION_SCHEMA).sort_by("session_id").combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SESSION_SCHEMA) as stream:
        stream.write_table(canonical, max_chunksize=max(canonical.num_rows, 1))
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


# --- The job's output -------------------------------------------------------------------

def _job_spans(fs: pafs.FileSystem, job_root: str) -> dict[int, list[str]]:
    """span -> its parquet files under JOB/sessions/_span=K/."""
    sessions = _join(job_root, "sessions")
    spans: dict[int, list[str]] = {}
    for info in fs.get_file_info(pafs.FileSelector(sessions, allow_not_found=True, recursive=True)):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
            continue
        partition = posixpath.basename(posixpath.dirname(info.path))
        if not partition.startswith(_SPAN_PARTITION):
            continue
        try:
            span = int(partition[len(_SPAN_PARTITION):])
        except ValueError:
            raise PublishError(f"{info.path}: the job wrote a span folder {partition!r} that is not "
                               f"{_SPAN_PARTITION}NUMBER") from None
        spans.setdefault(span, []).append(info.path)
    return {span: sorted(files) for span, files in spans.items()}


def _span_table(fs: pafs.FileSystem, files: list[str]) -> pa.Table:
    tables = []
    for path in files:
        with fs.open_input_file(path) as handle:
            table = pq.read_table(handle)
        missing = [name for name in SESSION_SCHEMA.names if name not in table.column_names]
        if missing:
            raise PublishError(f"{path}: the job's span file lacks the columns {missing} of the sessions table")
        try:
            tables.append(table.select(SESSION_SCHEMA.names).cast(SESSION_SCHEMA))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise PublishError(f"{path}: the job's span file does not have the sessions table's types: "
                               f"{error}") from None
    return pa.concat_tables(tables).sort_by("session_id")


def _span_day(table: pa.Table, span: int, path: str) -> str:
    days = set(table.column("session_date").to_pylist())
    spans = set(table.column("span").to_pylist())
    if len(days) != 1 or spans != {span}:
        raise PublishError(f"{path}: span {span} must hold the sessions of one day with span {span}, "
                           f"found days {sorted(days)} and spans {sorted(spans)}")
    return days.pop()


def _claims_complete(day: str, claims_watermark: str | None, max_delay_days: int) -> bool:
    if not claims_watermark:
        return False
    newest = datetime.datetime.fromisoformat(claims_watermark.replace("Z", "+00:00")).date()
    return newest >= datetime.date.fromisoformat(day) + datetime.timedelta(days=max_delay_days)


# --- Files, local or gs:// ----------------------------------------------------------------

def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(uri)


def _join(root: str, *parts: str) -> str:
    return posixpath.join(root, *parts)


def _read_json(fs: pafs.FileSystem, path: str) -> Any:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as handle:
        text = handle.read().decode()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PublishError(f"{path} is not valid JSON ({error}); restore it or move it away") from None


def _read_bytes(fs: pafs.FileSystem, path: str) -> bytes | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as handle:
        return handle.read()


def _sha256(fs: pafs.FileSystem, path: str) -> str | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _temporary(path: str) -> str:
    return _join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")


def _write_parquet(fs: pafs.FileSystem, path: str, table: pa.Table) -> str:
    """Writes table to path through a temporary file; returns the file's sha256."""
    fs.create_dir(posixpath.dirname(path), recursive=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    _write_bytes(fs, path, data)
    return hashlib.sha256(data).hexdigest()


def _write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    temporary = _temporary(path)
    try:
        with fs.open_output_stream(temporary) as handle:
            handle.write(data)
        fs.move(temporary, path)
    except BaseException:
        try:
            fs.delete_file(temporary)
        except OSError:
            pass
        raise


# --- Command line (the production pipeline's publish step) ------------------------------

def main(argv: Iterable[str] | None = None) -> int:
    """`python -m collection.spans publish --job-dir URI --spans URI`: exit 0, or 2 with one line."""
    parser = argparse.ArgumentParser(prog="python -m collection.spans",
                                     description="Publish a collection job's spans and update the manifest.")
    commands = parser.add_subparsers(dest="command", required=True)
    publish_command = commands.add_parser("publish", help="publish a finished job's spans")
    publish_command.add_argument("--job-dir", required=True, help="the job's output folder (local or gs://)")
    publish_command.add_argument("--spans", required=True, help="the spans folder (local or gs://)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        published = publish(args.job_dir, args.spans)
    except (PublishError, OSError) as error:
        print(f"collection publish: error: {error}", file=sys.stderr)
        return 2
    print(f"published {len(published.written)} span(s), {len(published.unchanged)} unchanged, "
          f"manifest {_join(args.spans, MANIFEST_NAME)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
