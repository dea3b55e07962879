"""The log schema: the contract with users' data, and its validation.

Two tables, each read from Parquet (``.parquet``/``.pq``) or CSV (``.csv``/``.csv.gz``), chosen by
extension:

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

EVENT_COLUMNS = ("user_id", "ts", "kind", "id")
IMPRESSION_COLUMNS = ("request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked")
EVENT_KINDS = ("query", "item")
TABLE_NAMES = ("events", "impressions")
_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
# Epoch seconds outside this range are almost always milliseconds or garbage.
TS_MIN = int(pd.Timestamp("1990-01-01", tz="UTC").timestamp())
TS_MAX = int(pd.Timestamp("2100-01-01", tz="UTC").timestamp())
_SHOWN_ROWS = 5


class SchemaError(ValueError):
    """A log file does not follow the schema. The message names file, column and rows."""

    def __init__(self, source: str, column: str | None, problem: str, rows=(), values=()):
        self.source, self.column, self.problem = source, column, problem
        self.rows = [int(r) for r in rows]
        where = f"{source}" + (f", column '{column}'" if column else "")
        shown = ""
        if self.rows:
            values = list(values)
            examples = [
                f"row {r}" + (f" ({values[i]!r})" if i < len(values) else "")
                for i, r in enumerate(self.rows[:_SHOWN_ROWS])
            ]
            more = f" (+{len(self.rows) - _SHOWN_ROWS} more)" if len(self.rows) > _SHOWN_ROWS else ""
            shown = f": {len(self.rows)} bad row(s); first: " + ", ".join(examples) + more
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

    def repair(self, what: str, n: int) -> None:
        if n:
            self.repaired[what] = self.repaired.get(what, 0) + int(n)

    def skip(self, why: str, n: int) -> None:
        if n:
            self.skipped[why] = self.skipped.get(why, 0) + int(n)

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
    """The single file ``<name>.<parquet|pq|csv|csv.gz>`` in ``logs_dir``."""
    logs_dir = Path(logs_dir)
    found = [logs_dir / f"{name}{s}" for s in _SUFFIXES if (logs_dir / f"{name}{s}").exists()]
    if not found:
        raise FileNotFoundError(
            f"{logs_dir}: no '{name}' table; expected one of " + ", ".join(f"{name}{s}" for s in _SUFFIXES)
        )
    if len(found) > 1:
        raise SchemaError(str(logs_dir), None, f"several '{name}' tables, keep one: {[p.name for p in found]}")
    return found[0]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read Parquet or CSV by extension. CSV fields are read as text; validation types them."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        frame = pd.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz")):
        # Every field as text, and no NA guessing: an empty field stays "" so that validation,
        # not the CSV parser, decides what a missing value means.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    else:
        raise SchemaError(str(path), None, f"unknown file type; use one of {', '.join(_SUFFIXES)}")
    return frame.reset_index(drop=True)


class _Checker:
    """Collects bad rows per column; raises or marks them for skipping, per ``bad_rows``."""

    def __init__(self, frame: pd.DataFrame, source: str, report: ValidationReport, bad_rows: str):
        if bad_rows not in ("error", "skip"):
            raise ValueError(f"bad_rows must be 'error' or 'skip', not {bad_rows!r}")
        self.frame, self.source, self.report, self.bad_rows = frame, source, report, bad_rows
        self.drop = np.zeros(len(frame), dtype=bool)

    def require_columns(self, columns) -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise SchemaError(
                self.source, missing[0],
                f"missing column (required: {', '.join(columns)}; found: {', '.join(map(str, self.frame.columns))})",
            )

    def bad(self, column: str, mask: np.ndarray, problem: str) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.drop
        if not mask.any():
            return
        rows = np.flatnonzero(mask)
        if self.bad_rows == "error":
            values = self.frame[column].to_numpy()[rows[:_SHOWN_ROWS]]
            raise SchemaError(self.source, column, problem, rows + 1, [_plain(v) for v in values])
        self.drop |= mask
        self.report.skip(f"{column}: {problem}", mask.sum())

    def bad_clean_rows(self, clean: pd.DataFrame, column: str, mask: np.ndarray, problem: str) -> pd.DataFrame:
        """Like :meth:`bad`, for rows of ``clean`` (whose index is the source row - 1); returns the rows kept."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return clean
        if self.bad_rows == "error":
            rows = clean.index.to_numpy()[mask] + 1
            raise SchemaError(self.source, column, problem, rows, clean[column].to_numpy()[mask][:_SHOWN_ROWS])
        self.report.skip(f"{column}: {problem}", mask.sum())
        return clean[~mask]

    def text(self, column: str, allow_empty: bool = False) -> pd.Series:
        """A string column. Null or blank is a bad row unless ``allow_empty`` (then it becomes "")."""
        col = self.frame[column]
        null = col.isna().to_numpy()
        if col.dtype.kind in "biuf":
            self.report.repair(f"{column}: numeric values cast to str", (~null).sum())
            col = col.astype("Int64" if col.dtype.kind in "biu" else "float64")
        text = col.astype(str).where(~null, "")
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
        self.report.skip("exact duplicate row", duplicated.sum())
        clean = clean[~duplicated]
        conflicting = clean.duplicated(subset=list(key_columns), keep=False).to_numpy()
        return self.bad_clean_rows(clean, key_columns[-1], conflicting,
                                   f"the same ({', '.join(key_columns)}) appears in rows that differ elsewhere")

    def finish(self, clean: pd.DataFrame) -> pd.DataFrame:
        """Count what is kept; a file whose every row was skipped is an error that says why."""
        self.report.rows_kept = len(clean)
        if self.report.rows_read and not len(clean):
            reasons = "; ".join(f"{n:,} {why}" for why, n in self.report.skipped.items())
            raise SchemaError(self.source, None, f"every row was skipped, nothing is left ({self.report.rows_read:,} read; "
                                                 f"skipped: {reasons})")
        return clean.reset_index(drop=True)


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


def validate_events(frame: pd.DataFrame, source: str = "events", bad_rows: str = "error"):
    """Typed events: user_id (object str), ts (int64 s), kind ('query'|'item'), id (object str)."""
    frame = frame.reset_index(drop=True)  # rows are numbered by position
    report = ValidationReport(source, rows_read=len(frame))
    check = _Checker(frame, source, report, bad_rows)
    check.require_columns(EVENT_COLUMNS)
    user_id = check.text("user_id")
    ts = check.timestamps("ts")
    raw_kind = frame["kind"].astype(str).where(frame["kind"].notna(), "")
    kind = raw_kind.str.strip().str.lower()
    report.repair("kind: case or whitespace normalized", ((kind != raw_kind) & kind.isin(EVENT_KINDS)).sum())
    check.bad("kind", ~kind.isin(EVENT_KINDS).to_numpy(), f"kind must be one of {', '.join(EVENT_KINDS)}")
    ids = check.text("id")
    clean = pd.DataFrame({"user_id": user_id, "ts": ts, "kind": kind.astype(object), "id": ids})
    clean = check.finish(check.deduplicate(clean, ["user_id", "ts", "kind", "id"]))
    if not len(frame):
        report.warn("the events file has no rows: every history is empty and the q2q/i2i graphs have no edges")
    return clean, report


def validate_impressions(frame: pd.DataFrame, source: str = "impressions", bad_rows: str = "error"):
    """Typed impressions; also checks that each request has one user and one ts."""
    frame = frame.reset_index(drop=True)  # rows are numbered by position
    report = ValidationReport(source, rows_read=len(frame))
    check = _Checker(frame, source, report, bad_rows)
    check.require_columns(IMPRESSION_COLUMNS)
    clean = pd.DataFrame({
        "request_id": check.text("request_id"),
        "user_id": check.text("user_id"),
        "ts": check.timestamps("ts"),
        "prefix": check.text("prefix", allow_empty=True),
        "candidate": check.text("candidate"),
        "position": check.integers("position").astype(np.int32),
        "clicked": check.integers("clicked", allowed=(0, 1)).astype(np.int8),
    })
    clean = check.deduplicate(clean, ["request_id", "candidate"])
    per_request = clean.groupby("request_id", sort=False).agg(users=("user_id", "nunique"), times=("ts", "nunique"))
    inconsistent = per_request.index[(per_request["users"] > 1) | (per_request["times"] > 1)]
    clean = check.bad_clean_rows(clean, "request_id", clean["request_id"].isin(inconsistent).to_numpy(),
                                 "one request_id has several user_id or ts values")
    return check.finish(clean), report


def load_logs(logs_dir: str | Path, bad_rows: str = "error") -> Logs:
    """Read and validate ``events`` and ``impressions`` from a directory."""
    events_path = find_table(logs_dir, "events")
    impressions_path = find_table(logs_dir, "impressions")
    events, events_report = validate_events(read_table(events_path), str(events_path), bad_rows)
    impressions, imp_report = validate_impressions(read_table(impressions_path), str(impressions_path), bad_rows)
    if not len(impressions):
        raise SchemaError(str(impressions_path), None, "no rows: the impressions are what the samples and the "
                                                       "train/valid/test split are made of")
    return Logs(events, impressions, [events_report, imp_report])
