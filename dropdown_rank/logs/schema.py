"""The log schema: the contract with users' data, and its validation.

Two tables, each read from Parquet (``.parquet``/``.pq``) or CSV (``.csv``/``.csv.gz``), chosen by
extension, from one file or from a directory of such files (their concatenation in name order):

``events``: one row per user behavior.
    user_id (str), ts (int epoch seconds or ISO-8601 string), kind (``query`` | ``item``), id (str:
    the query text or the item id).

``impressions``: one row per suggestion shown in a dropdown.
    request_id (str), user_id (str), ts, prefix (str, may be empty), candidate (str: the suggested
    query), position (int), clicked (0 | 1).

Validation either returns clean, typed frames or raises :class:`SchemaError` naming the file, the
column and the first bad rows. Rows are numbered from 1 for the first data row (in a CSV file, the
line number is row + 1 because of the header). Nothing is dropped silently: repairs (a ``kind``
written as ``Query``, a null prefix, integer ids cast to str, fractional seconds truncated) and
skips (exact duplicate rows, and bad rows when ``bad_rows="skip"``) are counted in the returned
:class:`ValidationReport`. Under ``bad_rows="skip"`` the request-level checks skip too: every row of
a request with several users or times, and every row of a (request, candidate) shown twice with
different values. If skipping leaves no row of a file, validation stops with an error that says
why. A file with no data rows is an error for impressions and a warning (in the report) for events.
Unsorted input is fine; later stages sort.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

EVENT_COLUMNS = ("user_id", "ts", "kind", "id")
IMPRESSION_COLUMNS = ("request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked")
EVENT_KINDS = ("query", "item")
TABLE_NAMES = ("events", "impressions")
_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
# Epoch seconds outside this range are almost always milliseconds or garbage.
DAY = 86400  # seconds in a UTC day: timestamps are epoch seconds, and days (snapshots, counters, splits) are UTC days
SESSION_GAP_MINUTES = 30.0  # a session ends after a longer gap between a user's behaviors (the graph build's default, the model's session context)
SAMPLE_ORDER = ["ts", "request_id", "position"]  # impressions within a split, as samples are written; ties keep the log's order
# What str.strip() removes (the characters of str.isspace): an id made only of them is blank, in the build and in serving.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
              "\u200a\u2028\u2029\u202f\u205f\u3000")
# Longer than any real query, item id or user id: such a row is garbage (a pasted document, a binary blob), and a
# ranker's score of such text means nothing. The build refuses longer ids; serving refuses a longer candidate or prefix.
MAX_ID_CHARS = 1000
TS_MIN = int(pd.Timestamp("1990-01-01", tz="UTC").timestamp())
TS_MAX = int(pd.Timestamp("2100-01-01", tz="UTC").timestamp())
_SHOWN_ROWS = 5


def _shown_value(value, limit: int = 80) -> str:
    """A bad value as an error shows it: its repr, cut to ``limit`` characters (a bad value can be a megabyte)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(str(value)):,} characters)"


class SchemaError(ValueError):
    """A log file does not follow the schema. The message names file, column and rows."""

    def __init__(self, source: str, column: str | None, problem: str, rows=(), values=(), count: int | None = None):
        """``rows`` are the bad rows (1-based), or their first ones when ``count`` gives the total."""
        self.source, self.column, self.problem = source, column, problem
        self.rows = [int(r) for r in rows]
        self.count = len(self.rows) if count is None else int(count)
        where = f"{source}" + (f", column '{column}'" if column else "")
        shown = ""
        if self.rows:
            values = list(values)
            examples = [
                f"row {r}" + (f" ({_shown_value(values[i])})" if i < len(values) else "")
                for i, r in enumerate(self.rows[:_SHOWN_ROWS])
            ]
            more = f" (+{self.count - _SHOWN_ROWS} more)" if self.count > _SHOWN_ROWS else ""
            shown = f": {self.count} bad row(s); first: " + ", ".join(examples) + more
        super().__init__(f"{where}: {problem}{shown}")


@dataclasses.dataclass
class ValidationReport:
    """What validation did to one file: counts, never silent."""

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    repaired: dict = dataclasses.field(default_factory=dict)
    skipped: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        # Where each repair/skip comes in the sequence of checks (not a field: not in to_dict()). Counts are
        # listed in that order, so reports of several chunks of a file merge into the report of the whole file.
        self._position: dict = {}
        self._clock = 0

    def tick(self, start: int = 0) -> int:
        """Advance the check sequence (to at least ``start``: a later phase of validation)."""
        self._clock = max(self._clock + 1, start)
        return self._clock

    def _add(self, field: str, key: str, n: int, position: int) -> None:
        counts = getattr(self, field)
        if key not in counts:
            self._position.setdefault((field, key), position)
            counts[key] = 0
            if len(counts) > 1:  # keep check order (chunks of a file, or several files, may find them in any order)
                ordered = sorted(counts, key=lambda k: self._position.get((field, k), 0))
                setattr(self, field, {k: counts[k] for k in ordered})
                counts = getattr(self, field)
        counts[key] += int(n)

    def repair(self, what: str, n: int) -> None:
        position = self.tick()
        if n:
            self._add("repaired", what, n, position)

    def skip(self, why: str, n: int) -> None:
        if n:
            self._add("skipped", why, n, self._clock)

    @classmethod
    def merge(cls, source: str, reports) -> "ValidationReport":
        """One report from the reports of a file's (or a table's files') chunks: counts summed, in check order."""
        merged = cls(source)
        for report in reports:
            merged.rows_read += report.rows_read
            merged.rows_kept += report.rows_kept
            for field in ("repaired", "skipped"):
                for key, n in getattr(report, field).items():
                    merged._add(field, key, n, report._position.get((field, key), 0))
            merged.warnings += [w for w in report.warnings if w not in merged.warnings]
        return merged

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def summary(self) -> str:
        parts = [f"{self.source}: {self.rows_read:,} rows read, {self.rows_kept:,} kept"]
        parts += [f"skipped {n:,} ({why})" for why, n in self.skipped.items()]
        parts += [f"repaired {n:,} ({what})" for what, n in self.repaired.items()]
        parts += [f"WARNING: {message}" for message in self.warnings]
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Logs:
    events: pd.DataFrame
    impressions: pd.DataFrame
    reports: list


def find_table(logs_dir: str | Path, name: str) -> Path:
    """The single file ``<name>.<parquet|pq|csv|csv.gz>`` in ``logs_dir``, or a directory ``<name>/`` of such files."""
    logs_dir = Path(logs_dir)
    found = [logs_dir / f"{name}{s}" for s in _SUFFIXES if (logs_dir / f"{name}{s}").exists()]
    if (logs_dir / name).is_dir():
        found.append(logs_dir / name)
    if not found:
        raise FileNotFoundError(
            f"{logs_dir}: no '{name}' table; expected one of " + ", ".join(f"{name}{s}" for s in _SUFFIXES)
            + f", or a directory '{name}/' of such files"
        )
    if len(found) > 1:
        raise SchemaError(str(logs_dir), None, f"several '{name}' tables, keep one: {[p.name for p in found]}")
    return found[0]


def table_files(path: str | Path) -> list[Path]:
    """The files of a table: the file itself, or a directory's files (``.parquet``/``.pq``/``.csv``/``.csv.gz``) in
    name order. A table read from several files is their concatenation in that order."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(_SUFFIXES) and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{path}: a table directory with no {', '.join(_SUFFIXES)} files")
    return files


_CSV_OPTIONS = dict(dtype=str, keep_default_na=False, na_values=[])


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def check_not_zero_bytes(path: Path) -> None:
    """A 0-byte file is neither a CSV (no header row) nor a Parquet file, and the readers fail on it without naming it:
    most often an export that failed upstream, so it is an error, not a table with no rows."""
    if path.stat().st_size == 0:
        raise SchemaError(str(path), None, "the file is empty (0 bytes, not even a header row): a table with no rows still "
                                           "needs its header (CSV) or schema (Parquet); rewrite it, or remove it from a table "
                                           "directory")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read Parquet or CSV by extension. CSV fields are read as text; validation types them."""
    path = Path(path)
    check_not_zero_bytes(path)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        frame = pd.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz")):
        # Every field as text, and no NA guessing: an empty field stays "" so that validation,
        # not the CSV parser, decides what a missing value means.
        frame = pd.read_csv(path, **_CSV_OPTIONS)
    else:
        raise SchemaError(str(path), None, f"unknown file type; use one of {', '.join(_SUFFIXES)}")
    return frame.reset_index(drop=True)


def table_columns(path: str | Path) -> list[str]:
    """The column names of one file, read from its schema or header only."""
    path = Path(path)
    check_not_zero_bytes(path)
    if _is_parquet(path):
        return [c for c in pq.read_schema(path).names if not c.startswith("__index_level_")]
    return list(pd.read_csv(path, nrows=0, **_CSV_OPTIONS).columns)


def file_chunks(path: str | Path, chunk_rows: int) -> list[tuple]:
    """How to read one file in pieces: Parquet by row groups ``(path, first_row, row_groups)``, each piece at most
    ``chunk_rows`` rows unless one row group is larger; a CSV file is one piece ``(path, 0, None)`` read in
    ``chunk_rows`` slices by :func:`read_chunks`."""
    path = Path(path)
    if not _is_parquet(path):
        return [(str(path), 0, None)]
    meta = pq.ParquetFile(path).metadata
    pieces, groups, first, rows = [], [], 0, 0
    for group in range(meta.num_row_groups):
        n = meta.row_group(group).num_rows
        if groups and rows + n > chunk_rows:
            pieces.append((str(path), first, tuple(groups)))
            groups, first, rows = [], first + rows, 0
        groups.append(group)
        rows += n
    if groups or not pieces:
        pieces.append((str(path), first, tuple(groups)))
    return pieces


def _nullable_parquet_columns(path: Path) -> set:
    """Integer and boolean columns of a Parquet file with nulls somewhere. Read whole, pandas makes them float64 or
    object; a row group without nulls must be converted the same way, or validation would read other values."""
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    leaf = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    out = set()
    for field in pf.schema_arrow:
        if not (pa.types.is_integer(field.type) or pa.types.is_boolean(field.type)) or field.name not in leaf:
            continue
        column = leaf[field.name]
        nulls = 0
        for group in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(group).column(column).statistics
            if stats is None or not stats.has_null_count:
                nulls = pq.read_table(path, columns=[field.name]).column(0).null_count
                break
            nulls += stats.null_count
        if nulls:
            out.add(field.name)
    return out


def read_chunks(piece: tuple, chunk_rows: int):
    """Yield ``(first_row, frame)`` for one piece of :func:`file_chunks`: the same values, row for row, as
    :func:`read_table` gives for the whole file (row ``first_row`` of the file is the frame's first)."""
    path, first, groups = Path(piece[0]), int(piece[1]), piece[2]
    if groups is None:
        with pd.read_csv(path, chunksize=chunk_rows, **_CSV_OPTIONS) as reader:
            for frame in reader:
                yield first, frame.reset_index(drop=True)
                first += len(frame)
        return
    pf = pq.ParquetFile(path)
    frame = pf.read_row_groups(list(groups)).to_pandas() if groups else pf.schema_arrow.empty_table().to_pandas()
    for name in _nullable_parquet_columns(path) & set(frame.columns):
        if frame[name].dtype.kind in "iu":
            frame[name] = frame[name].astype("float64")
        elif frame[name].dtype.kind == "b":
            frame[name] = frame[name].astype(object)
    yield first, frame.reset_index(drop=True)


@dataclasses.dataclass
class Finding:
    """Bad rows that validation in collecting mode (per chunk of a file, see ``dropdown_rank/beam``) records
    instead of raising. Merged over chunks, the smallest ``order`` is the error a whole-file validation raises."""

    order: tuple  # (phase: 0 row checks / 1 table checks, file index, position in the check sequence)
    source: str
    column: str | None
    problem: str
    count: int
    rows: list  # the first bad rows as 0-based keys (row in file, or table-wide key), ascending
    values: list

    @classmethod
    def merge(cls, findings) -> "Finding":
        """One finding from the same check's findings in several chunks."""
        findings = list(findings)
        first = sorted((r, v) for f in findings for r, v in zip(f.rows, f.values))[:_SHOWN_ROWS]
        head = findings[0]
        return cls(head.order, head.source, head.column, head.problem, sum(f.count for f in findings),
                   [r for r, _ in first], [v for _, v in first])

    def error(self, row_number=None) -> SchemaError:
        rows = [(r if row_number is None else row_number(r)) + 1 for r in self.rows]
        return SchemaError(self.source, self.column, self.problem, rows, self.values, count=self.count)


_TABLE_PHASE = 1_000_000  # table-wide checks come after every row check in the check sequence


class _Checker:
    """Collects bad rows per column; raises or marks them for skipping, per ``bad_rows``.

    With ``findings`` (a list), ``bad_rows="error"`` records a :class:`Finding` per failing check instead of
    raising, and keeps checking: one chunk of a file is checked as the whole file would be. ``first_row`` is the
    chunk's first row in its file (for messages); ``index_base`` is added to build the clean rows' keys.
    """

    def __init__(self, frame: pd.DataFrame, source: str, report: ValidationReport, bad_rows: str, findings=None,
                 first_row: int = 0, index_base: int = 0, file_index: int = 0):
        if bad_rows not in ("error", "skip"):
            raise ValueError(f"bad_rows must be 'error' or 'skip', not {bad_rows!r}")
        self.frame, self.source, self.report, self.bad_rows = frame, source, report, bad_rows
        self.findings, self.first_row, self.index_base, self.file_index = findings, first_row, index_base, file_index
        self.drop = np.zeros(len(frame), dtype=bool)

    def require_columns(self, columns) -> None:
        require_columns(self.frame.columns, columns, self.source)

    def bad(self, column: str, mask: np.ndarray, problem: str) -> None:
        position = self.report.tick()
        mask = np.asarray(mask, dtype=bool) & ~self.drop
        if not mask.any():
            return
        rows = np.flatnonzero(mask)
        if self.bad_rows == "error":
            values = [_plain(v) for v in self.frame[column].to_numpy()[rows[:_SHOWN_ROWS]]]
            if self.findings is None:
                raise SchemaError(self.source, column, problem, rows + 1 + self.first_row, values)
            self.findings.append(Finding((0, self.file_index, position), self.source, column, problem, len(rows),
                                         (rows[:_SHOWN_ROWS] + self.first_row).tolist(), values))
            return
        self.drop |= mask
        self.report.skip(f"{column}: {problem}", mask.sum())

    def bad_clean_rows(self, clean: pd.DataFrame, column: str, mask: np.ndarray, problem: str) -> pd.DataFrame:
        """Like :meth:`bad`, for rows of ``clean`` (whose index is the source row - 1); returns the rows kept."""
        position = self.report.tick()
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return clean
        if self.bad_rows == "error":
            keys = clean.index.to_numpy()[mask]
            values = clean[column].to_numpy()[mask]
            if self.findings is None:
                raise SchemaError(self.source, column, problem, keys + 1, values[:_SHOWN_ROWS])
            order = np.argsort(keys, kind="stable")[:_SHOWN_ROWS]
            self.findings.append(Finding((1, 0, position), self.source, column, problem, int(mask.sum()),
                                         keys[order].tolist(), [_plain(v) for v in values[order]]))
            return clean
        self.report.skip(f"{column}: {problem}", mask.sum())
        return clean[~mask]

    def text(self, column: str, allow_empty: bool = False) -> pd.Series:
        """A string column. Null or blank is a bad row unless ``allow_empty`` (then it becomes "")."""
        col = self.frame[column]
        null = col.isna().to_numpy()
        inexact = np.zeros(len(col), dtype=bool)
        if col.dtype.kind in "biuf":
            if col.dtype.kind == "f":  # 11.0 is the id "11", as an integer column (or a CSV) would give it
                values = col.to_numpy(dtype="float64", na_value=np.nan)
                # Above 2**53 a float64 no longer holds every integer: distinct ids (hashed 64-bit ones, read as float
                # because their column has a null) would merge.
                inexact = ~null & ~(np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < 2.0 ** 53))
                col = pd.Series(np.where(inexact | null, 0, values).astype(np.int64), index=col.index)
            else:
                col = col.astype("Int64")
            self.report.repair(f"{column}: numeric values cast to str", (~null & ~inexact & ~self.drop).sum())
        text = col.astype(str).where(~null, "")
        self.bad(column, inexact, "a float id that is not a whole number below 2**53 (ids are text or integers; store "
                                  "large integer ids as int64 or text, not float)")
        self.bad(column, (text.str.len() > MAX_ID_CHARS).to_numpy(), f"text longer than {MAX_ID_CHARS:,} characters")
        blank = (text.str.strip() == "").to_numpy()
        if allow_empty:
            self.report.repair(f"{column}: null read as empty string", null.sum())
        else:
            self.bad(column, blank, "null or blank id")
        return text.astype(object)

    def timestamps(self, column: str = "ts") -> np.ndarray:
        seconds, unparseable, fractional = _parse_timestamps(self.frame[column])
        self.bad(column, unparseable, "unparseable timestamp (want epoch seconds or ISO-8601)")
        parsed = ~unparseable
        self.bad(column, parsed & (seconds < 0), "negative timestamp: a time before 1970 (want epoch seconds from 1990 to 2100)")
        self.bad(column, parsed & (seconds >= 0) & (seconds < TS_MIN), "timestamp before 1990 (want epoch seconds from 1990 to 2100)")
        self.bad(column, parsed & (seconds > TS_MAX), "timestamp outside 1990..2100 (milliseconds instead of seconds?)")
        self.report.repair(f"{column}: fractional seconds truncated", (fractional & ~self.drop).sum())
        return seconds

    def integers(self, column: str, allowed=None) -> np.ndarray:
        col = self.frame[column]
        if col.dtype == bool:
            col = col.astype(int)
        values = pd.to_numeric(col.astype(str).str.strip() if col.dtype.kind not in "biuf" else col, errors="coerce")
        values = values.to_numpy(dtype="float64", na_value=np.nan)
        not_int = ~np.isfinite(values) | (values != np.round(values))
        self.bad(column, not_int, "wrong type: expected an integer")
        values = np.where(not_int, 0, values).astype(np.int64)
        if allowed is not None:
            self.bad(column, ~not_int & ~np.isin(values, allowed), f"value outside {{{', '.join(map(str, allowed))}}}")
        return values

    def deduplicate(self, clean: pd.DataFrame, key_columns) -> pd.DataFrame:
        """Drop bad rows and exact duplicates; conflicting duplicates (same key, other values differ)
        are an error, or skipped (all their rows) under ``bad_rows="skip"``. Keeps the source index."""
        clean = clean[~self.drop]
        duplicated = clean.duplicated(keep="first").to_numpy()
        self.report.tick()
        self.report.skip("exact duplicate row", duplicated.sum())
        clean = clean[~duplicated]
        conflicting = clean.duplicated(subset=list(key_columns), keep=False).to_numpy()
        return self.bad_clean_rows(clean, key_columns[-1], conflicting,
                                   f"the same ({', '.join(key_columns)}) appears in rows that differ elsewhere")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def parse_timestamps(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds (int64) and a mask of unparseable values. Vectorized.

    Accepts integer epoch seconds, numeric strings, ISO-8601 strings (naive ones are taken as UTC)
    and datetime columns (Parquet timestamps). Fractional seconds are dropped (rounded down).
    """
    seconds, bad, _ = _parse_timestamps(col)
    return seconds, bad


def _parse_timestamps(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`parse_timestamps`, plus a mask of the values that had fractional seconds."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return _epoch_seconds(pd.to_datetime(col, utc=True))
    if col.dtype.kind in "biuf":
        values = col.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(values)
        whole = np.floor(np.nan_to_num(values))
        return np.where(bad, 0, whole).astype(np.int64), bad, ~bad & (whole != np.nan_to_num(values))
    text = col.astype(str).str.strip().where(col.notna(), "")
    numeric = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    whole = np.floor(np.nan_to_num(numeric))
    is_text = ~np.isfinite(numeric)
    seconds = np.where(is_text, 0, whole).astype(np.int64)
    fractional = ~is_text & (whole != np.nan_to_num(numeric))
    bad = np.zeros(len(col), dtype=bool)
    if is_text.any():
        parsed, unparseable, parsed_fractional = _epoch_seconds(
            pd.to_datetime(text[is_text], format="ISO8601", utc=True, errors="coerce")
        )
        seconds[is_text] = parsed
        bad[is_text] = unparseable
        fractional[is_text] = parsed_fractional
    return seconds, bad, fractional


def _epoch_seconds(utc: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # pandas >= 3 infers the datetime unit (s, ms, us, ns), so convert explicitly, not by // 1e9.
    exact = utc.dt.tz_localize(None).to_numpy()
    moments = exact.astype("datetime64[s]")
    missing = np.isnat(moments)
    fractional = ~missing & (moments.astype(exact.dtype) != exact)
    return np.where(missing, 0, moments.astype(np.int64)), missing, fractional


def require_columns(present, columns, source: str) -> None:
    """A missing column is an error naming the file, the column, and what the file has."""
    present = list(present)
    missing = [c for c in columns if c not in present]
    if missing:
        raise SchemaError(
            source, missing[0],
            f"missing column (required: {', '.join(columns)}; found: {', '.join(map(str, present))})",
        )


TABLE_COLUMNS = {"events": EVENT_COLUMNS, "impressions": IMPRESSION_COLUMNS}
TABLE_KEYS = {"events": ("user_id", "ts", "kind", "id"), "impressions": ("request_id", "candidate")}
_EMPTY_EVENTS = "the events file has no rows: every history is empty and the q2q/i2i graphs have no edges"


def check_rows(table: str, frame: pd.DataFrame, source: str, report: ValidationReport, bad_rows: str = "error",
               findings=None, first_row: int = 0, index_base: int = 0, file_index: int = 0) -> pd.DataFrame:
    """The row-by-row checks and repairs of one file (or one chunk of it: rows ``first_row``... of the file).

    Returns the typed rows that pass, indexed by ``index_base`` + their position in ``frame``; the table-wide
    checks (:func:`check_table`) come next. See :class:`_Checker` for ``findings``.
    """
    frame = frame.reset_index(drop=True)  # rows are numbered by position
    check = _Checker(frame, source, report, bad_rows, findings, first_row, index_base, file_index)
    check.require_columns(TABLE_COLUMNS[table])
    if table == "events":
        user_id = check.text("user_id")
        ts = check.timestamps("ts")
        raw_kind = frame["kind"].astype(str).where(frame["kind"].notna(), "")
        kind = raw_kind.str.strip().str.lower()
        report.repair("kind: case or whitespace normalized", ((kind != raw_kind) & kind.isin(EVENT_KINDS)).sum())
        check.bad("kind", ~kind.isin(EVENT_KINDS).to_numpy(), f"kind must be one of {', '.join(EVENT_KINDS)}")
        ids = check.text("id")
        clean = pd.DataFrame({"user_id": user_id, "ts": ts, "kind": kind.astype(object), "id": ids})
    elif table == "impressions":
        clean = pd.DataFrame({
            "request_id": check.text("request_id"),
            "user_id": check.text("user_id"),
            "ts": check.timestamps("ts"),
            "prefix": check.text("prefix", allow_empty=True),
            "candidate": check.text("candidate"),
            "position": check.integers("position").astype(np.int32),
            "clicked": check.integers("clicked", allowed=(0, 1)).astype(np.int8),
        })
    else:
        raise ValueError(f"table must be one of {TABLE_NAMES}, not {table!r}")
    clean.index = clean.index + index_base
    return clean[~check.drop]


def check_table(table: str, clean: pd.DataFrame, source: str, report: ValidationReport, bad_rows: str = "error",
                findings=None) -> pd.DataFrame:
    """The checks across rows, on the rows :func:`check_rows` kept, in source order (index: the rows' keys).

    Exact duplicates are skipped (the first is kept); conflicting duplicates, and for impressions a request with
    several users or times, are errors (or skipped). Every row they compare shares the ``user_id`` (events) or the
    ``request_id`` (impressions), so a part of the table holding every row of its users (requests) is checked
    exactly as the whole table is.
    """
    report.tick(_TABLE_PHASE)
    check = _Checker(clean, source, report, bad_rows, findings)
    clean = check.deduplicate(clean, TABLE_KEYS[table])
    if table == "impressions":
        per_request = clean.groupby("request_id", sort=False).agg(users=("user_id", "nunique"), times=("ts", "nunique"))
        inconsistent = per_request.index[(per_request["users"] > 1) | (per_request["times"] > 1)]
        clean = check.bad_clean_rows(clean, "request_id", clean["request_id"].isin(inconsistent).to_numpy(),
                                     "one request_id has several user_id or ts values")
    return clean


def check_kept(table: str, report: ValidationReport) -> None:
    """After every check (``report.rows_kept`` set): a file whose every row was skipped is an error that says why;
    an events file without rows is a warning."""
    if report.rows_read and not report.rows_kept:
        reasons = "; ".join(f"{n:,} {why}" for why, n in report.skipped.items())
        raise SchemaError(report.source, None, f"every row was skipped, nothing is left ({report.rows_read:,} read; "
                                               f"skipped: {reasons})")
    if table == "events" and not report.rows_read and _EMPTY_EVENTS not in report.warnings:
        report.warn(_EMPTY_EVENTS)


def validate_frame(table: str, frame: pd.DataFrame, source: str, bad_rows: str = "error"):
    """``(clean frame, ValidationReport)`` of one table (``"events"`` or ``"impressions"``) already read, its rows
    named after ``source``: typed columns (user_id and id as str, ts as int64 seconds), and for impressions one
    user and one ts per request."""
    frame = frame.reset_index(drop=True)
    report = ValidationReport(source, rows_read=len(frame))
    clean = check_table(table, check_rows(table, frame, source, report, bad_rows), source, report, bad_rows)
    report.rows_kept = len(clean)
    check_kept(table, report)
    return clean.reset_index(drop=True), report


def validate_table(table: str, path: str | Path, bad_rows: str = "error"):
    """Read and validate one table: a file, or a directory of files (see :func:`table_files`).

    The files of a directory are checked row by row each under its own name (rows numbered within the file),
    then together as one table (rows numbered across the files, in name order) under the directory's name.
    """
    path = Path(path)
    files = table_files(path)
    if files == [path]:
        return validate_frame(table, read_table(path), str(path), bad_rows)
    report = ValidationReport(str(path))
    parts, offset = [], 0
    for index, file in enumerate(files):
        frame = read_table(file)
        report.rows_read += len(frame)
        report._clock = 0  # each file runs the same sequence of checks: a count's place in the report is its check's
        parts.append(check_rows(table, frame, str(file), report, bad_rows, index_base=offset, file_index=index))
        offset += len(frame)
    clean = check_table(table, pd.concat(parts), str(path), report, bad_rows)
    report.rows_kept = len(clean)
    check_kept(table, report)
    return clean.reset_index(drop=True), report


def load_logs(logs_dir: str | Path, bad_rows: str = "error") -> Logs:
    """Read and validate ``events`` and ``impressions`` from a directory."""
    events_path = find_table(logs_dir, "events")
    impressions_path = find_table(logs_dir, "impressions")
    events, events_report = validate_table("events", events_path, bad_rows)
    impressions, imp_report = validate_table("impressions", impressions_path, bad_rows)
    check_impressions_not_empty(len(impressions), impressions_path)
    return Logs(events, impressions, [events_report, imp_report])


def check_impressions_not_empty(rows: int, impressions_path) -> None:
    if not rows:
        raise SchemaError(str(impressions_path), None, "no rows: the impressions are what the samples and the "
                                                       "train/valid/test split are made of")
