"""Pipeline 1: read the logs in chunks, validate them as :mod:`dropdown_rank.logs.schema` does, and write the clean
rows partitioned by user.

* ``Create(pieces)`` of every file (Parquet row groups; a CSV file is read in slices) → ``ParDo(CheckChunk)``: the
  row-by-row checks and repairs (``schema.check_rows``), each chunk under its file's name and row numbers. In
  ``--bad-rows error`` mode a chunk records its bad rows (``schema.Finding``) instead of raising, so the driver can
  raise exactly the error a whole-file validation raises first.
* Clean rows keyed by a bucket of what the table-wide checks compare (events: ``user_id``; impressions:
  ``request_id``) → ``GroupByKey`` → ``ParDo(CheckBucket)``: exact and conflicting duplicates and, for impressions,
  one user and one time per request (``schema.check_table``), on the rows of the bucket in source order.
* Events are then already partitioned by user: each bucket is written as one Parquet file. Impressions are keyed by
  hour → ``GroupByKey`` → ``ParDo(RankHour)``: their rank in the samples' order within the hour (the driver turns
  hourly counts into each hour's offset in its split, so the samples can be written in the in-memory build's shards)
  → keyed by user bucket → ``GroupByKey`` → written like the events.
* Reports, findings and hourly counts are small: flattened, ``ToList`` and written for the driver.

Rows cross every ``GroupByKey`` as references to scratch Arrow files (``common.StashFile``), not as elements.
"""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dropdown_rank.beam.common import (KEYED, EVENT_DTYPES, HOUR, IMPRESSION_DTYPES, ROW_BITS, bucket_of, dump, stash, to_arrow,
                                       to_frame, unstash, write_bucket)
from dropdown_rank.logs.schema import (DAY, SAMPLE_ORDER, TABLE_COLUMNS, TABLE_NAMES, Finding, SchemaError, ValidationReport, check_impressions_not_empty,
                                       check_kept, check_rows, check_table, file_chunks, find_table, read_chunks,
                                       require_columns, table_columns, table_files)

_GROUP_COLUMN = {"events": "user_id", "impressions": "request_id"}


@beam.typehints.with_output_types(KEYED)
class CheckChunk(beam.DoFn):
    """Row-by-row checks of one piece of a file (``schema.check_rows``)."""

    def __init__(self, bad_rows: str, chunk_rows: int, buckets: int, sources: dict, tmp: str):
        self.bad_rows, self.chunk_rows, self.buckets, self.sources, self.tmp = bad_rows, chunk_rows, buckets, sources, tmp

    def process(self, spec):
        table, file_index, piece = spec
        for first_row, frame in read_chunks(piece, self.chunk_rows):
            report = ValidationReport(self.sources[table], rows_read=len(frame))
            findings = [] if self.bad_rows == "error" else None
            clean = check_rows(table, frame, str(piece[0]), report, self.bad_rows, findings, first_row=first_row,
                               index_base=(file_index << ROW_BITS) + first_row, file_index=file_index)
            yield beam.pvalue.TaggedOutput("small", ("report", table, file_index, report))
            for finding in findings or ():
                yield beam.pvalue.TaggedOutput("small", ("finding", table, finding))
            clean = clean.assign(_row=clean.index.to_numpy(np.int64))
            for bucket, ref in stash(self.tmp, "rows", to_arrow(clean), bucket_of(clean[_GROUP_COLUMN[table]].to_numpy(), self.buckets)):
                yield (table, bucket), ref


@beam.typehints.with_output_types(KEYED)
class CheckBucket(beam.DoFn):
    """Table-wide checks of the rows of one bucket of users (events) or requests (impressions)."""

    def __init__(self, bad_rows: str, buckets: int, sources: dict, tmp: str):
        self.bad_rows, self.buckets, self.sources, self.tmp = bad_rows, buckets, sources, tmp

    def process(self, element):
        (table, bucket), refs = element
        frame = to_frame(unstash(refs), EVENT_DTYPES if table == "events" else IMPRESSION_DTYPES)
        frame = frame.set_index("_row", drop=False).sort_index(kind="stable")
        frame.index.name = None
        report = ValidationReport(self.sources[table])
        findings = [] if self.bad_rows == "error" else None
        clean = check_table(table, frame.drop(columns="_row"), self.sources[table], report, self.bad_rows, findings)
        clean = frame.loc[clean.index] if len(clean) < len(frame) else frame
        report.rows_kept = len(clean)
        yield beam.pvalue.TaggedOutput("small", ("report", table, -1, report))
        for finding in findings or ():
            yield beam.pvalue.TaggedOutput("small", ("finding", table, finding))
        if not len(clean):
            return
        yield beam.pvalue.TaggedOutput("small", ("first_day", table, int(clean["ts"].min()) // DAY * DAY))
        rows = to_arrow(clean.reset_index(drop=True))
        if table == "events":
            write_bucket(self.tmp, "events", bucket, rows)
            return
        yield from stash(self.tmp, "hours", rows, clean["ts"].to_numpy() // HOUR)


@beam.typehints.with_output_types(KEYED)
class RankHour(beam.DoFn):
    """Rank of each impression of one hour in the samples' order (ties: source order); rows keyed by user bucket."""

    def __init__(self, buckets: int, tmp: str):
        self.buckets, self.tmp = buckets, tmp

    def process(self, element):
        hour, refs = element
        rows = pa.concat_tables(unstash(refs), promote_options="default")
        # Arrow orders strings by UTF-8 bytes, which is code point order: pandas' order of Python strings.
        rows = rows.sort_by([(column, "ascending") for column in SAMPLE_ORDER + ["_row"]])
        rows = rows.append_column("_rank", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        yield beam.pvalue.TaggedOutput("small", ("hour", int(hour), rows.num_rows))
        yield from stash(self.tmp, "user-rows", rows, bucket_of(rows["user_id"].to_numpy(zero_copy_only=False), self.buckets))


class WriteImpressions(beam.DoFn):
    def __init__(self, tmp: str):
        self.tmp = tmp

    def process(self, element):
        bucket, refs = element
        write_bucket(self.tmp, "impressions", bucket, pa.concat_tables(unstash(refs), promote_options="default").sort_by("_row"))


def plan(logs_dir: Path, chunk_rows: int):
    """Per table: its path, its files, the pieces to read, the findings of missing columns, and its rows (estimated
    for CSV files) — everything the driver knows before the pipeline runs."""
    out = {}
    for table in TABLE_NAMES:
        path = find_table(logs_dir, table)
        files = table_files(path)
        pieces, findings, rows = [], [], 0
        for index, file in enumerate(files):
            try:
                require_columns(table_columns(file), TABLE_COLUMNS[table], str(file))
            except SchemaError as error:  # raised in the order a whole-table validation meets it
                findings.append((index, error))
                continue
            pieces += [(table, index, piece) for piece in file_chunks(file, chunk_rows)]
            rows += _estimated_rows(file)
        out[table] = {"path": path, "files": files, "pieces": pieces, "column_errors": findings, "rows": rows}
    return out


def _estimated_rows(file: Path) -> int:
    if file.name.lower().endswith((".parquet", ".pq")):
        return pq.ParquetFile(file).metadata.num_rows
    return file.stat().st_size // (20 if file.name.lower().endswith(".gz") else 60)


def validation_pipeline(pipeline: beam.Pipeline, tables: dict, bad_rows: str, chunk_rows: int, buckets: int, tmp: str) -> None:
    sources = {table: str(info["path"]) for table, info in tables.items()}
    pieces = [spec for info in tables.values() for spec in info["pieces"]]
    chunks = (pipeline
              | "pieces" >> beam.Create(pieces, reshuffle=True)
              | "check rows" >> beam.ParDo(CheckChunk(bad_rows, chunk_rows, buckets, sources, tmp)).with_outputs("small", main="rows"))
    buckets_checked = (chunks.rows
                       | "group by bucket" >> beam.GroupByKey()
                       | "check table" >> beam.ParDo(CheckBucket(bad_rows, buckets, sources, tmp)).with_outputs("small", main="hours"))
    ranked = (buckets_checked.hours
              | "group by hour" >> beam.GroupByKey()
              | "rank in hour" >> beam.ParDo(RankHour(buckets, tmp)).with_outputs("small", main="rows"))
    _ = (ranked.rows
         | "group by user bucket" >> beam.GroupByKey()
         | "write impressions" >> beam.ParDo(WriteImpressions(tmp)))
    _ = ((chunks.small, buckets_checked.small, ranked.small)
         | "small results" >> beam.Flatten()
         | "collect" >> beam.combiners.ToList()
         | "write results" >> beam.Map(dump, str(Path(tmp) / "validation.pkl")))


def resolve(tables: dict, records: list):
    """The driver's side: raise the error the in-memory validation would raise first, or return the reports
    (events, impressions), the clean impressions per hour ``{hour start: rows}`` and the log's first day (the start
    of the day of its earliest clean row, either table)."""
    reports, hours = [], {}
    for table in TABLE_NAMES:
        info = tables[table]
        mine = [r for r in records if r[0] != "hour" and r[1] == table]
        findings = _merged_findings([r[2] for r in mine if r[0] == "finding"])
        rows_read = {}
        for record in mine:
            if record[0] == "report" and record[2] >= 0:
                rows_read[record[2]] = rows_read.get(record[2], 0) + record[3].rows_read
        # Missing columns stop a file before its first row check: the earliest finding of that file.
        candidates = [((0, index, 0), error) for index, error in info["column_errors"]]
        candidates += [(f.order, f.error(_row_number(info["files"], rows_read) if f.order[0] == 1 else None)) for f in findings]
        if candidates:
            raise min(candidates, key=lambda c: c[0])[1]
        report = ValidationReport.merge(str(info["path"]), [r[3] for r in mine if r[0] == "report"])
        check_kept(table, report)
        reports.append(report)
    check_impressions_not_empty(reports[1].rows_kept, tables["impressions"]["path"])
    for record in records:
        if record[0] == "hour":
            hours[record[1] * HOUR] = hours.get(record[1] * HOUR, 0) + record[2]
    return reports, hours, min(record[2] for record in records if record[0] == "first_day")


def _merged_findings(findings):
    groups = {}
    for finding in findings:
        groups.setdefault((finding.order, finding.source, finding.column, finding.problem), []).append(finding)
    return [Finding.merge(group) for group in groups.values()]


def _row_number(files, rows_read: dict):
    """Row keys of a table-wide finding as rows of the table: for several files, numbered across them in name order."""
    offsets = np.concatenate([[0], np.cumsum([rows_read.get(i, 0) for i in range(len(files))])])
    mask = (1 << ROW_BITS) - 1
    return lambda key: int(offsets[key >> ROW_BITS] + (key & mask))


def impressions_per_hour(hours: dict) -> tuple[np.ndarray, np.ndarray]:
    starts = np.array(sorted(hours), dtype=np.int64)
    return starts, np.array([hours[h] for h in starts], dtype=np.int64)

