"""Convert the AOL query log (March-May 2006) into the log schema, with reconstructed impressions.

Input, detected per file from its first non-blank line:

(a) **per-user files** of the 1,000-user extract (``<AnonID>.txt``): blocks separated by a blank
    line, each a ``<query>\\t<YYYY-MM-DD HH:MM:SS>`` line followed by zero or more clicked-URL
    lines. The user id is the file name without ``.txt``. ``src`` may be a directory of such files
    or the ``.tar``/``.tar.gz`` holding them, which is streamed member by member (nothing is
    extracted to disk).
(b) **the original release** (``user-ct-test-collection-NN.txt[.gz]``): tab-separated, header
    ``AnonID Query QueryTime ItemRank ClickURL``, one row per query without a click and one row per
    click (which repeats its query). Consecutive rows with the same (AnonID, Query, QueryTime) are
    one query issued, their ClickURLs its clicks in row order: the extract of (a) has the same
    grouping, so the same rows in either format convert to the same logs. ItemRank is not used.

A directory is walked recursively (hidden files skipped); ``.tar``/``.tar.gz``/``.tgz`` files in it
are streamed too, other ``.gz`` files are read as gzip text. Files in neither format (a README) are
skipped and listed in the summary. Text is read as UTF-8; undecodable bytes become U+FFFD (counted).

Events
    * every query issued is a ``query`` event at its QueryTime. The text is normalized as in the
      Best Buy loader (:func:`dropdown_rank.logs.bestbuy.normalize_query`: lower case, whitespace
      runs to one space, trimmed). ``-`` (AOL's empty query) and queries empty after normalization
      are skipped and counted; their clicks are kept as item events;
    * every clicked URL is an ``item`` event. AOL logged no click time, so the k-th click after a
      query is placed at the query's time + k seconds (click order kept, always after the query).
      URLs are normalized minimally: surrounding whitespace stripped, scheme and host lower-cased,
      and an empty path written ``/`` (``http://www.Google.com`` -> ``http://www.google.com/``,
      equivalent URLs by RFC 3986 section 6.2.3; the extract writes host URLs with the ``/``, so
      both forms must give one item). Nothing else (no ``www.`` stripping, no path case change).
    * times carry no zone in the log; they are read as UTC, so a "day" is a calendar day of the
      logged clock.

Impressions (the log has none; reconstructed as in query auto-completion studies)
    Every query event is one dropdown request at the query's time, by its user, except
    re-submissions:

    * **re-submission**: a query event whose text (normalized) equals the same user's immediately
      previous query event, at most ``resubmit_gap_minutes`` (30) later. AOL logged a new row with a
      new time when a user came back to a result page (next page, back button) as well as when they
      typed the query again, so such a row is mostly not something typed in a search box. It stays a
      ``query`` event (the user did issue it) but is not a dropdown request: it has no impressions,
      and it does not count in the popularity behind the candidates (an index of what users typed).
      "Previous" is in the order of ``events.parquet`` (time, then query text within one second);
      skipped queries (``-``, bad times) are not events and do not break a run; the previous event
      may itself be a re-submission (A at 10:00, 10:20, 10:40 with a 30-minute gap: one request),
      and may be on an earlier day. ``resubmit_gap_minutes=0`` turns the rule off (every query
      event is a request); ``None`` sets no limit on the gap. Counted as
      ``query_events_resubmitted`` in the summary (``query_events = requests +
      query_events_resubmitted``).

    * **prefix**: what the user had typed. ``prefix_rule="chars"`` (default): the query's first
      ``prefix_len`` characters (3), spaces included; a shorter query is its own prefix.
      ``prefix_rule="word"``: the first ``prefix_len`` characters of the query's first word (so
      ``nj transit`` -> ``nj``). Shorter prefixes match more completions: a harder list to rank and
      a weaker MPC order; longer ones give short lists where the issued query is often on top.
    * **candidates**: the most popular completions (MPC) of the prefix: the queries that start with
      it, ranked by how often they were issued (by anyone, every issue counted) on the days before
      the request's day, ties broken by first appearance in the log (the older query first), at most
      ``candidates`` (10) of them. ``popularity_days=None`` (default) counts every earlier day, as
      an index rebuilt nightly from the whole past; ``popularity_days=W`` counts only days d-W to
      d-1, a recency-sensitive index (trending queries rise faster, rare old ones drop out, and
      fewer issued queries are found in the list). Queries of the request's own day never count:
      no request sees the popularity its own query or the day's later queries create.
    * **click**: the issued query is the candidate clicked; every other candidate is unclicked.
      ``position`` is its 0-based MPC rank. When the issued query is not in the MPC list:
      ``unlisted="drop"`` (default) drops the request, so every kept request is a re-ranking of the
      MPC list that contains the answer, and every candidate, the clicked one included, is a query
      issued on an earlier day; ``unlisted="insert"`` keeps it with the issued query replacing the
      last candidate (shown at the list's end). Insertion keeps more requests but makes them easier
      in an unrealistic way: the clicked candidate is then often a query never issued before (an
      out-of-vocabulary id that no other candidate can be) and always the last one. The summary
      counts the requests each choice keeps, whatever the option.
    * a request left with fewer than 2 candidates (nothing to rank: every request of the log's first
      day, and prefixes never typed before) is skipped and counted.

Streaming, in two passes (the full release, 36M rows in 10 gzip files, is never held in memory):

1. rows are parsed into chunks of ``chunk_rows`` queries plus clicks; each chunk's events are
   normalized (vectorized) and spooled to per-day Parquet shards in a temporary directory under
   ``out``;
2. days are processed in order. A day's shards are read, sorted by (ts, user_id, kind, id) and
   appended to ``events.parquet``; its queries that are not re-submissions (each user's last query
   event of the earlier days is carried over) are the requests, ranked against the popularity
   table of earlier days (vectorized: one sort of the needed table rows, no per-request Python);
   then the day's own counts are added to the table (and, with ``popularity_days``, the day
   leaving the window is subtracted).

Peak memory is one chunk or one day of rows, each user's last query event (with the re-submission
rule on) and the popularity table, which holds one entry per distinct query seen so far (a 64-bit
hash, its text in Arrow, its prefix key, its count): it grows with the number of distinct queries
(10.2M normalized queries in the full release, per its README) and of users, not with the number
of rows. ``events.parquet`` and ``impressions.parquet`` are written
atomically (a temporary file renamed at the end), with ``aol.json``, the conversion summary.
"""
from __future__ import annotations

import collections
import gzip
import io
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dropdown_rank._io import atomic_path, stage_and_swap, write_json
from dropdown_rank.logs.bestbuy import normalize_query
from dropdown_rank.logs.schema import DAY, TS_MAX, TS_MIN

AOL_HEADER = ("anonid", "query", "querytime", "itemrank", "clickurl")
EMPTY_QUERY = "-"
PREFIX_RULES = ("chars", "word")
UNLISTED = ("drop", "insert")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
RESUBMIT_GAP_MINUTES = 30  # default of convert_aol's resubmit_gap_minutes; data/README.md gives the measurement
_LAST_CHAR = "\U0010ffff"  # above every character: p + _LAST_CHAR bounds the strings that start with p

EVENTS_SCHEMA = pa.schema([("user_id", pa.string()), ("ts", pa.int64()), ("kind", pa.string()), ("id", pa.string())])
IMPRESSIONS_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("user_id", pa.string()), ("ts", pa.int64()), ("prefix", pa.string()),
    ("candidate", pa.string()), ("position", pa.int32()), ("clicked", pa.int8()),
])

# Reasons a row is skipped, as written in aol.json.
SKIP_EMPTY = "empty query ('-' or blank after normalization)"
SKIP_TIME = "unparseable or out-of-range QueryTime"
SKIP_CLICK_TIME = "click of a query with an unparseable QueryTime"
SKIP_ORPHAN = "click line outside a query block"
SKIP_MALFORMED = "row without 3 to 5 tab-separated fields or without AnonID"
SKIP_FEW = "fewer than 2 candidates"
SKIP_UNLISTED = "issued query not in the MPC list (unlisted='drop')"


# ----------------------------------------------------------------------------------------------
# Pass 1: reading


class _Rows:
    """One chunk of parsed rows: queries issued, and clicks pointing at their query."""

    def __init__(self):
        self.user, self.query, self.time = [], [], []
        self.click_of, self.click_order, self.url = [], [], []

    def __len__(self) -> int:
        return len(self.user) + len(self.url)


class _Reader:
    """Parses sources into chunks of rows and hands each full chunk to ``flush``."""

    def __init__(self, flush, chunk_rows: int, summary: dict):
        self.flush, self.chunk_rows, self.summary = flush, chunk_rows, summary
        self.rows = _Rows()

    def _new_query(self, user: str, query: str, qtime: str) -> None:
        if len(self.rows) >= self.chunk_rows:  # only between queries: a click's query is in its chunk
            self.finish()
        self.rows.user.append(user)
        self.rows.query.append(query)
        self.rows.time.append(qtime)

    def _click(self, order: int, url: str) -> None:
        self.rows.click_of.append(len(self.rows.user) - 1)
        self.rows.click_order.append(order)
        self.rows.url.append(url)

    def finish(self) -> None:
        if len(self.rows):
            self.flush(self.rows)
        self.rows = _Rows()

    def read_user_file(self, lines, user: str, first: str) -> int:
        """Format (a). Returns the number of lines read."""
        n, order, in_block = 0, 0, False
        for line in _chain(first, lines):
            n += 1
            line = line.rstrip("\r\n")
            if not line.strip():
                in_block = False
                continue
            tab = line.rfind("\t")
            if tab >= 0:
                self._new_query(user, line[:tab], line[tab + 1:])
                order, in_block = 0, True
            elif in_block:
                order += 1
                self._click(order, line)
            else:
                _count(self.summary["rows_skipped"], SKIP_ORPHAN)
        return n

    def read_release_file(self, lines) -> int:
        """Format (b), after its header line. Returns the number of data lines read."""
        n, order, previous = 0, 0, None
        for line in lines:
            n += 1
            parts = line.rstrip("\r\n").split("\t")
            if not 3 <= len(parts) <= 5 or not parts[0].strip():
                if line.strip():
                    _count(self.summary["rows_skipped"], SKIP_MALFORMED)
                continue
            key = (parts[0], parts[1], parts[2])
            if key != previous:
                user = parts[0].strip()
                self._new_query(user, parts[1], parts[2])
                order, previous = 0, key
            url = parts[4] if len(parts) == 5 else ""
            if url.strip():
                order += 1
                self._click(order, url)
        return n


def _chain(first: str, lines):
    yield first
    yield from lines


def _count(counter: dict, reason: str, n: int = 1) -> None:
    if n:
        counter[reason] = counter.get(reason, 0) + int(n)


def _is_tar(name: str) -> bool:
    return name.lower().endswith(_TAR_SUFFIXES)


def _sources(src: Path):
    """(name, binary stream) of every file of ``src``: a file, a tar archive or a directory."""
    if src.is_dir():
        paths = sorted(p for p in src.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(src).parts))
        for path in paths:
            yield from _sources(path)
    elif _is_tar(src.name):
        with tarfile.open(src, "r|*") as archive:  # streamed: members are read in order, never extracted
            for member in archive:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and not base.startswith("."):
                    yield f"{src}:{member.name}", base, archive.extractfile(member)
    elif src.is_file():
        with open(src, "rb") as handle:
            yield str(src), src.name, handle
    else:
        raise FileNotFoundError(f"{src}: no such file or directory")


class _Readable(io.RawIOBase):
    """A file object with only ``read`` (a streamed tar member) as a raw stream that io can buffer."""

    def __init__(self, stream):
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _text(name: str, stream) -> io.TextIOBase:
    stream = io.BufferedReader(_Readable(stream), buffer_size=1 << 20)
    if name.lower().endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace")


def _detect(first: str) -> str | None:
    """'release', 'users' or None from a file's first non-blank line."""
    fields = first.rstrip("\r\n").split("\t")
    if tuple(f.strip().lower() for f in fields) == AOL_HEADER:
        return "release"
    if len(fields) == 2 and pd.notna(pd.to_datetime(fields[-1].strip(), format=TIME_FORMAT, errors="coerce")):
        return "users"
    return None


def _read_sources(src: Path, reader: _Reader, summary: dict) -> None:
    for name, base, stream in _sources(src):
        lines = _text(base, stream)
        first = next((line for line in lines if line.strip()), None)
        kind = None if first is None else _detect(first)
        if kind is None:
            summary["files_skipped"].append(name + (" (empty)" if first is None else " (not an AOL log)"))
            continue
        summary["files"][kind] += 1
        if kind == "release":
            summary["lines_read"] += 1 + reader.read_release_file(lines)
        else:
            user = base[:-len(".txt")] if base.lower().endswith(".txt") else base.split(".")[0]
            summary["lines_read"] += reader.read_user_file(lines, user, first)
    reader.finish()


def _epoch_seconds(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds of ``YYYY-MM-DD HH:MM:SS`` strings (read as UTC) and a mask of valid ones."""
    moments = pd.to_datetime(text.str.strip(), format=TIME_FORMAT, errors="coerce").to_numpy().astype("datetime64[s]")
    valid = ~np.isnat(moments)
    seconds = np.where(valid, moments.astype(np.int64), 0)
    valid &= (seconds >= TS_MIN) & (seconds <= TS_MAX)
    return seconds, valid


def normalize_url(urls) -> np.ndarray:
    """Strip; lower-case scheme and host; an empty path after a scheme becomes ``/`` (vectorized)."""
    text = pc.utf8_trim_whitespace(pa.array(urls, type=pa.string()))
    parts = pc.extract_regex(text, r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?(?P<host>[^/?#]*)(?P<rest>.*)$")
    scheme = pc.utf8_lower(pc.struct_field(parts, "scheme"))
    rest = pc.struct_field(parts, "rest")
    needs_slash = pc.and_(pc.not_equal(scheme, ""), pc.invert(pc.starts_with(rest, "/")))
    rest = pc.if_else(needs_slash, pc.binary_join_element_wise("/", rest, ""), rest)
    host = pc.utf8_lower(pc.struct_field(parts, "host"))
    return pc.binary_join_element_wise(scheme, host, rest, "").to_numpy(zero_copy_only=False)


def _chunk_events(rows: _Rows, summary: dict) -> pd.DataFrame:
    """Events of one chunk (vectorized), with their UTC day."""
    skipped = summary["rows_skipped"]
    raw = pd.Series(rows.query, dtype=object)
    ts, valid = _epoch_seconds(pd.Series(rows.time, dtype=object))
    query = normalize_query(raw)
    empty = ((query == "") | (query == EMPTY_QUERY)).to_numpy()
    summary["queries_read"] += len(raw)
    _count(skipped, SKIP_TIME, (~valid).sum())
    _count(skipped, SKIP_EMPTY, (valid & empty).sum())
    keep = valid & ~empty
    summary["queries_rewritten_by_normalization"] += int(((query != raw).to_numpy() & keep).sum())
    summary["queries_with_undecodable_bytes_replaced"] += int((query.str.contains("\ufffd", regex=False).to_numpy() & keep).sum())

    click_of = np.asarray(rows.click_of, dtype=np.int64)
    click_ok = valid[click_of]
    summary["clicks_read"] += len(click_of)
    _count(skipped, SKIP_CLICK_TIME, (~click_ok).sum())
    summary["clicks_of_empty_queries_kept"] += int((click_ok & empty[click_of]).sum())
    click_of = click_of[click_ok]
    urls = normalize_url(np.asarray(rows.url, dtype=object)[click_ok])
    users = np.asarray(rows.user, dtype=object)
    events = pd.DataFrame({
        "user_id": np.concatenate([users[keep], users[click_of]]),
        "ts": np.concatenate([ts[keep], ts[click_of] + np.asarray(rows.click_order, dtype=np.int64)[click_ok]]),
        "kind": np.repeat(np.array(["query", "item"], dtype=object), [int(keep.sum()), len(click_of)]),
        "id": np.concatenate([query.to_numpy(dtype=object)[keep], urls]),
    })
    events["day"] = events["ts"] // DAY
    return events


# ----------------------------------------------------------------------------------------------
# Pass 2: the popularity table and the ranking


class _Grow:
    """A numpy array that grows by doubling."""

    def __init__(self, dtype):
        self.data, self.n = np.zeros(1024, dtype=dtype), 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.data):
            bigger = np.zeros(max(need, 2 * len(self.data)), dtype=self.data.dtype)
            bigger[:self.n] = self.data[:self.n]
            self.data = bigger
        self.data[self.n:need] = values
        self.n = need

    @property
    def values(self) -> np.ndarray:
        return self.data[:self.n]


class _Popularity:
    """Every distinct query seen so far: id (order of first appearance), text, prefix key, count.

    Lookup is by a 64-bit hash of the text (a sorted array and ``searchsorted``); every lookup is
    checked against the stored text, so a hash collision stops the conversion instead of merging two
    queries. ``count`` holds the issues within the popularity window (days before the current one).
    """

    def __init__(self, key_len: int):
        self.key_len = key_len
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.hash_ids = np.zeros(0, dtype=np.int64)
        self.texts: list[pa.Array] = []
        self.key_of = _Grow(np.int32)
        self.count = _Grow(np.int64)
        self.key_codes: dict[str, int] = {}
        self.sorted_keys = np.zeros(0, dtype=object)
        self.sorted_key_codes = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.count.n

    def text(self, ids: np.ndarray) -> np.ndarray:
        return pa.chunked_array(self.texts, type=pa.string()).take(pa.array(ids, type=pa.int64())).to_numpy(zero_copy_only=False)

    def ids(self, queries: np.ndarray) -> np.ndarray:
        """Ids of ``queries`` (object array of str), adding the new ones in order of appearance."""
        hashes = pd.util.hash_array(queries, categorize=True)
        pos = np.searchsorted(self.hashes, hashes)
        found = pos < len(self.hashes)
        found[found] = self.hashes[pos[found]] == hashes[found]
        ids = np.full(len(queries), -1, dtype=np.int64)
        ids[found] = self.hash_ids[pos[found]]
        new_hashes, first = np.unique(hashes[~found], return_index=True)
        if len(new_hashes):
            by_appearance = np.argsort(first, kind="stable")
            new_ids = np.empty(len(new_hashes), dtype=np.int64)
            new_ids[by_appearance] = len(self) + np.arange(len(new_hashes))
            ids[~found] = new_ids[np.searchsorted(new_hashes, hashes[~found])]
            texts = queries[~found][first[by_appearance]]
            self._add(texts)
            at = np.searchsorted(self.hashes, new_hashes)
            self.hashes = np.insert(self.hashes, at, new_hashes)
            self.hash_ids = np.insert(self.hash_ids, at, new_ids)
        if len(queries) and not (self.text(ids) == queries).all():
            raise RuntimeError("64-bit hash collision between two distinct queries; cannot convert this log")
        return ids

    def _add(self, texts: np.ndarray) -> None:
        self.texts.append(pa.array(texts, type=pa.string()))
        keys = pd.Series(texts, dtype=object).str[:self.key_len]
        new_keys = [k for k in pd.unique(keys) if k not in self.key_codes]
        for key in new_keys:
            self.key_codes[key] = len(self.key_codes)
        if new_keys:
            ordered = sorted(self.key_codes)
            self.sorted_keys = np.array(ordered, dtype=object)
            self.sorted_key_codes = np.array([self.key_codes[k] for k in ordered], dtype=np.int64)
        self.key_of.extend(keys.map(self.key_codes).to_numpy(dtype=np.int32))
        self.count.extend(np.zeros(len(texts), dtype=np.int64))

    def add_counts(self, ids: np.ndarray, counts: np.ndarray) -> None:
        np.add.at(self.count.data, ids, counts)

    def top(self, prefixes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MPC lists of ``prefixes`` (object array of distinct str): for prefix i, the ids
        ``ids[start[i]:start[i] + size[i]]``, most issued first, ties by id (first appearance)."""
        n_prefixes = len(prefixes)
        # Keys (first key_len chars of each query) that start with each prefix: a range of the
        # sorted keys. A prefix is at most key_len long, so a query completes it iff its key does.
        lo = np.searchsorted(self.sorted_keys, prefixes, side="left")
        hi = np.searchsorted(self.sorted_keys, prefixes + _LAST_CHAR, side="left")
        pair_prefix = np.repeat(np.arange(n_prefixes), hi - lo)
        pair_key = self.sorted_key_codes[_ranges(lo, hi - lo)]
        # Queries with a count, of the keys needed, sorted by (key, count desc, id).
        count = self.count.values
        active = np.flatnonzero(count > 0)
        needed = np.zeros(len(self.key_codes) + 1, dtype=bool)
        needed[pair_key] = True
        active = active[needed[self.key_of.values[active]]]
        keys, counts = self.key_of.values[active], count[active]
        order = np.lexsort((active, -counts, keys))
        active, keys, counts = active[order], keys[order], counts[order]
        # The top k of each key; a prefix's top k is among the top k of its keys.
        start = np.searchsorted(keys, pair_key, side="left")
        take = np.minimum(np.searchsorted(keys, pair_key, side="right") - start, k)
        rows = _ranges(start, take)
        pool_prefix, pool_id, pool_count = np.repeat(pair_prefix, take), active[rows], counts[rows]
        order = np.lexsort((pool_id, -pool_count, pool_prefix))
        pool_prefix, pool_id = pool_prefix[order], pool_id[order]
        first = np.searchsorted(pool_prefix, np.arange(n_prefixes), side="left")
        rank = np.arange(len(pool_prefix)) - first[pool_prefix]
        kept = rank < k
        pool_prefix, pool_id = pool_prefix[kept], pool_id[kept]
        size = np.bincount(pool_prefix, minlength=n_prefixes)
        return np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64), size, pool_id


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total)


def request_prefixes(queries: pd.Series, rule: str, length: int) -> pd.Series:
    """The typed prefix of each (normalized) query under a prefix rule."""
    if rule == "chars":
        return queries.str[:length]
    if rule == "word":
        return queries.str.split(" ", n=1).str[0].str[:length]
    raise ValueError(f"prefix_rule must be one of {PREFIX_RULES}, not {rule!r}")


def _day_impressions(requests: pd.DataFrame, first_number: int, table: _Popularity, options: dict,
                     summary: dict) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """Impressions of one day's requests (sorted), from the popularity table of earlier days; then
    adds the day's counts to the table and returns them (ids, counts) with the impressions."""
    k, unlisted = options["candidates"], options["unlisted"]
    queries = requests["id"].to_numpy(dtype=object)
    issued = table.ids(queries)
    prefix = request_prefixes(requests["id"].astype(object), options["prefix_rule"], options["prefix_len"])
    prefix_code, prefixes = pd.factorize(prefix.to_numpy(dtype=object))
    start, size, listed_ids = table.top(np.asarray(prefixes, dtype=object), k)
    req_start, req_size = start[prefix_code], size[prefix_code]

    # The issued query's rank in its request's list, or -1.
    rank = np.full(len(requests), -1, dtype=np.int64)
    if len(listed_ids):
        list_prefix = np.repeat(np.arange(len(prefixes)), size)
        width = np.int64(len(table) + 1)
        list_key = list_prefix * width + listed_ids
        by_key = np.argsort(list_key, kind="stable")
        want = prefix_code.astype(np.int64) * width + issued
        at = np.minimum(np.searchsorted(list_key[by_key], want), len(list_key) - 1)
        hit = list_key[by_key[at]] == want
        rank[hit] = by_key[at[hit]] - req_start[hit]
    is_listed = rank >= 0
    seen = table.count.values[issued] > 0
    summary["requests"] += len(requests)
    summary["requests_issued_in_list"] += int(is_listed.sum())
    summary["requests_issued_outside_list_but_counted"] += int((~is_listed & seen).sum())
    summary["requests_issued_not_counted_before"] += int((~is_listed & ~seen).sum())
    keep_listed = is_listed & (req_size >= 2)
    keep_inserted = ~is_listed & (req_size >= 1)  # the list's first k-1 and the issued query: >= 2
    summary["requests_kept_if_drop"] += int(keep_listed.sum())
    summary["requests_kept_if_insert"] += int((keep_listed | keep_inserted).sum())
    if unlisted == "insert":
        _count(summary["requests_skipped"], SKIP_FEW, (~(keep_listed | keep_inserted)).sum())
    else:
        _count(summary["requests_skipped"], SKIP_FEW, (is_listed & ~keep_listed).sum())
        _count(summary["requests_skipped"], SKIP_UNLISTED, (~is_listed).sum())
        keep_inserted[:] = False

    # Rows: the shown part of each kept request's list, then the inserted issued query.
    shown = np.where(keep_listed, req_size, np.where(keep_inserted, np.minimum(req_size, k - 1), 0))
    req = np.repeat(np.arange(len(requests)), shown)
    position = _ranges(np.zeros(len(shown), dtype=np.int64), shown)
    candidate = listed_ids[req_start[req] + position]
    inserted = np.flatnonzero(keep_inserted)
    req = np.concatenate([req, inserted])
    position = np.concatenate([position, shown[inserted]])
    candidate = np.concatenate([candidate, issued[inserted]])
    order = np.lexsort((position, req))
    req, position, candidate = req[order], position[order], candidate[order]
    for p, n in zip(*np.unique(position[candidate == issued[req]], return_counts=True)):
        summary["clicked_position_counts"][int(p)] = summary["clicked_position_counts"].get(int(p), 0) + int(n)

    numbers = pd.Series(first_number + req).astype(str).str.zfill(9)
    impressions = pd.DataFrame({
        "request_id": ("aol" + numbers).to_numpy(dtype=object),
        "user_id": requests["user_id"].to_numpy(dtype=object)[req],
        "ts": requests["ts"].to_numpy(dtype=np.int64)[req],
        "prefix": np.asarray(prefixes, dtype=object)[prefix_code[req]],
        "candidate": table.text(candidate),
        "position": position.astype(np.int32),
        "clicked": (candidate == issued[req]).astype(np.int8),
    })
    # This day's issues count from the next day on.
    ids, counts = np.unique(issued, return_counts=True)
    table.add_counts(ids, counts)
    return impressions, (ids, counts)


class _Writer:
    """Parquet rows appended in row groups of at least ``rows`` rows."""

    def __init__(self, path: Path, schema: pa.Schema, rows: int = 262_144):
        self.writer = pq.ParquetWriter(path, schema)
        self.schema, self.rows, self.parts, self.buffered, self.total = schema, rows, [], 0, 0

    def write(self, frame: pd.DataFrame, last: bool = False) -> None:
        if len(frame):
            self.parts.append(frame)
            self.buffered += len(frame)
        if self.parts and (self.buffered >= self.rows or last):
            table = pa.Table.from_pandas(pd.concat(self.parts, ignore_index=True), schema=self.schema, preserve_index=False)
            self.writer.write_table(table)
            self.total += table.num_rows
            self.parts, self.buffered = [], 0

    def close(self) -> None:
        self.write(pd.DataFrame(), last=True)
        if not self.total:  # a file with the schema and no rows
            self.writer.write_table(self.schema.empty_table())
        self.writer.close()


def _resubmissions(queries: pd.DataFrame, last: pd.DataFrame, gap_seconds: float) -> tuple[np.ndarray, pd.DataFrame]:
    """Which of one day's query events (sorted by ts, then user and text) are re-submissions: the same
    text as the user's previous query event, at most ``gap_seconds`` before. ``last`` holds each
    user's last query event of the earlier days (index user_id; columns id, ts); returns the mask
    and ``last`` updated with this day (vectorized: one stable sort by user, no per-row Python)."""
    n = len(queries)
    codes, users = pd.factorize(queries["user_id"].to_numpy(dtype=object))
    order = np.argsort(codes, kind="stable")  # by user, then in event order
    user, text = codes[order], queries["id"].to_numpy(dtype=object)[order]
    ts = queries["ts"].to_numpy(dtype=np.int64)[order]
    first = np.ones(n, dtype=bool)
    first[1:] = user[1:] != user[:-1]
    prev_text = np.empty(n, dtype=object)
    prev_text[1:] = text[:-1]
    prev_ts = np.zeros(n, dtype=np.int64)
    prev_ts[1:] = ts[:-1]
    has_prev = ~first
    carried = last.reindex(np.asarray(users, dtype=object)[user[first]])
    known = carried["id"].notna().to_numpy()
    prev_text[first] = np.where(known, carried["id"].to_numpy(dtype=object), None)
    prev_ts[first] = np.where(known, carried["ts"].fillna(0).to_numpy(), 0).astype(np.int64)
    has_prev[first] = known
    resubmitted = np.zeros(n, dtype=bool)
    resubmitted[order] = has_prev & (text == prev_text) & (ts - prev_ts <= gap_seconds)
    final = np.ones(n, dtype=bool)
    final[:-1] = user[1:] != user[:-1]
    day_last = pd.DataFrame({"id": text[final], "ts": ts[final]},
                            index=pd.Index(np.asarray(users, dtype=object)[user[final]], dtype=object))
    last = pd.concat([last[~last.index.isin(day_last.index)], day_last])
    return resubmitted, last


# ----------------------------------------------------------------------------------------------


def _check_options(prefix_rule, prefix_len, candidates, popularity_days, unlisted, chunk_rows,
                   resubmit_gap_minutes) -> None:
    if prefix_rule not in PREFIX_RULES:
        raise ValueError(f"prefix_rule must be one of {PREFIX_RULES}, not {prefix_rule!r}")
    if unlisted not in UNLISTED:
        raise ValueError(f"unlisted must be one of {UNLISTED}, not {unlisted!r}")
    if prefix_len < 1:
        raise ValueError(f"prefix_len must be at least 1, not {prefix_len}")
    if candidates < 2:
        raise ValueError(f"candidates must be at least 2 (a request needs 2 to rank), not {candidates}")
    if popularity_days is not None and popularity_days < 1:
        raise ValueError(f"popularity_days must be at least 1 or None (every earlier day), not {popularity_days}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    if resubmit_gap_minutes is not None and not resubmit_gap_minutes >= 0:  # refuses NaN too
        raise ValueError(f"resubmit_gap_minutes must be >= 0 (0: off) or None (no limit), not {resubmit_gap_minutes}")


def convert_aol(src: str | Path, out: str | Path, *, prefix_rule: str = "chars", prefix_len: int = 3,
                candidates: int = 10, popularity_days: int | None = None, unlisted: str = "drop",
                resubmit_gap_minutes: float | None = RESUBMIT_GAP_MINUTES, chunk_rows: int = 500_000,
                progress=print) -> dict:
    """Convert the AOL log at ``src`` into ``out/{events,impressions}.parquet`` and ``out/aol.json``.

    See the module docstring for the formats read and the reconstruction rule. Returns the summary
    written to ``aol.json``. ``resubmit_gap_minutes``: a query event repeating the user's previous
    one at most this many minutes later is an event but not a request; 0 turns this off, None sets
    no limit.
    """
    _check_options(prefix_rule, prefix_len, candidates, popularity_days, unlisted, chunk_rows, resubmit_gap_minutes)
    if resubmit_gap_minutes is not None and np.isinf(resubmit_gap_minutes):
        resubmit_gap_minutes = None  # no limit, written as null in aol.json
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    options = {"prefix_rule": prefix_rule, "prefix_len": prefix_len, "candidates": candidates,
               "popularity_days": popularity_days, "unlisted": unlisted, "resubmit_gap_minutes": resubmit_gap_minutes}
    summary = {
        "source": str(src), "options": options, "files": {"users": 0, "release": 0}, "files_skipped": [],
        "lines_read": 0, "queries_read": 0, "clicks_read": 0, "rows_skipped": {},
        "queries_rewritten_by_normalization": 0, "queries_with_undecodable_bytes_replaced": 0,
        "clicks_of_empty_queries_kept": 0,
        "events": 0, "query_events": 0, "item_events": 0, "days": 0, "first_day": None, "last_day": None,
        "query_events_resubmitted": 0, "requests": 0, "requests_issued_in_list": 0,
        "requests_issued_outside_list_but_counted": 0, "requests_issued_not_counted_before": 0,
        "requests_kept_if_drop": 0, "requests_kept_if_insert": 0, "requests_kept": 0, "requests_skipped": {},
        "impressions": 0, "clicked_position_counts": {},
    }

    def write(staging: Path) -> None:
        spool = staging / ".spool"  # per-day shards of the first pass; inside the staging directory, so a killed
        spool.mkdir()                # conversion leaves nothing behind that the next one does not remove
        chunks = [0]

        def flush(rows: _Rows) -> None:
            events = _chunk_events(rows, summary)
            for day, part in events.groupby("day", sort=True):
                folder = spool / f"{int(day):06d}"
                folder.mkdir(exist_ok=True)
                part.drop(columns="day").to_parquet(folder / f"{chunks[0]:06d}.parquet", index=False)
            chunks[0] += 1

        _read_sources(src, _Reader(flush, chunk_rows, summary), summary)
        files = summary["files"]["users"] + summary["files"]["release"]
        if not files:
            raise ValueError(f"{src}: no AOL log file found (per-user <AnonID>.txt files, or the release's "
                             f"tab-separated files with header {' '.join(h for h in AOL_HEADER)})")
        progress(f"aol: read {summary['lines_read']:,} lines from {files:,} files ({summary['queries_read']:,} queries, "
                 f"{summary['clicks_read']:,} clicks; {len(summary['files_skipped'])} other files skipped)")
        _second_pass(spool, staging, options, summary)
        shutil.rmtree(spool)
        summary["seconds"] = round(time.perf_counter() - started, 2)
        summary["clicked_position_counts"] = {str(p): n for p, n in sorted(summary["clicked_position_counts"].items())}
        write_json(staging / "aol.json", summary)

    # Written whole into a staging directory and swapped in: a kill never leaves events of one
    # conversion beside impressions of another, and a directory holding anything else is refused.
    stage_and_swap(out, write, {"events.parquet", "impressions.parquet", "aol.json"}, "aol.json", "converted AOL logs")
    skipped = sum(summary["rows_skipped"].values())
    progress(f"aol: {summary['events']:,} events and {summary['impressions']:,} impressions "
             f"({summary['requests_kept']:,} of {summary['requests']:,} requests kept; "
             f"{summary['query_events_resubmitted']:,} re-submitted query events not requests) over {summary['days']} days "
             f"written to {out}; {skipped:,} rows skipped; see {out / 'aol.json'}")
    return summary


def _second_pass(spool: Path, out: Path, options: dict, summary: dict) -> None:
    days = sorted(int(folder.name) for folder in spool.iterdir())
    table = _Popularity(options["prefix_len"])
    window = collections.deque()  # (day, ids, counts) of the days still counted
    gap = options["resubmit_gap_minutes"]
    gap_seconds = np.inf if gap is None else 60.0 * gap
    last = pd.DataFrame({"id": pd.Series(dtype=object), "ts": pd.Series(dtype=np.int64)},
                        index=pd.Index([], dtype=object))  # each user's last query event so far
    number = 0
    with atomic_path(out / "events.parquet") as events_tmp, atomic_path(out / "impressions.parquet") as imp_tmp:
        events_out = _Writer(events_tmp, EVENTS_SCHEMA)
        imp_out = _Writer(imp_tmp, IMPRESSIONS_SCHEMA)
        for day in days:
            if options["popularity_days"] is not None:
                while window and window[0][0] < day - options["popularity_days"]:
                    _, ids, counts = window.popleft()
                    table.add_counts(ids, -counts)
            events = pd.concat([pd.read_parquet(path) for path in sorted((spool / f"{day:06d}").iterdir())],
                               ignore_index=True)
            events = events.sort_values(["ts", "user_id", "kind", "id"], kind="stable", ignore_index=True)
            events_out.write(events)
            requests = events[events["kind"] == "query"].reset_index(drop=True)
            summary["events"] += len(events)
            summary["query_events"] += len(requests)
            summary["item_events"] += len(events) - len(requests)
            if gap != 0 and len(requests):
                resubmitted, last = _resubmissions(requests, last, gap_seconds)
                summary["query_events_resubmitted"] += int(resubmitted.sum())
                requests = requests[~resubmitted].reset_index(drop=True)
            if len(requests):
                impressions, counted = _day_impressions(requests, number, table, options, summary)
                number += len(requests)
                window.append((day, *counted))
                imp_out.write(impressions)
                summary["impressions"] += len(impressions)
                summary["requests_kept"] += int(impressions["request_id"].nunique())
        events_out.close()
        imp_out.close()
    summary["days"] = len(days)
    if days:
        summary["first_day"] = str(np.datetime64(days[0], "D"))
        summary["last_day"] = str(np.datetime64(days[-1], "D"))
