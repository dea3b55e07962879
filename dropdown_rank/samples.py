"""Training samples: one row per impression, with the user's histories as sequences.

Each row holds the request (``request_id``, ``user_id``, ``request_ts``), the ``candidate``, its
``position`` and ``label``; the user's last ``max_len`` queries and last ``max_len`` items strictly
before ``request_ts`` with their timestamps (``query_history``, ``query_history_ts``,
``item_history``, ``item_history_ts``; **most recent first**, so a model with L=20 reads the first 20
of the L=50 stored once); and two slicing fields: ``activity`` (the user's behaviors in the
``lookback_days`` before the request) and ``candidate_pv``. **PV**, here and in every report, is
how many times the candidate was shown in a dropdown during the training period (its training-period
impressions), not page views of a results page. Neighbors are never stored here: models look them
up in the graph tables. Names and types of every field come from ``features.py``.

Model inputs beyond the sequences: the ``prefix`` typed, and the point-in-time counters of
``counters.py`` (``user_candidate_count``, ``user_candidate_age``, ``candidate_query_count``,
``candidate_impressions``, ``candidate_clicks``), all from data before the request.

Histories are gathered with ``searchsorted`` on a (user, ts) key over all events, per chunk of
impressions, so memory stays bounded and no Python runs per example. Shards are Parquet files
``<split>/part-NNNNN.parquet`` of at most ``shard_rows`` rows, time-ordered, each with its training
records beside it (``part-NNNNN.tfrecord.gz``, ``records.py``), which the training input reads.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from dropdown_rank._io import atomic_path
from dropdown_rank.counters import _TS_SHIFT, CandidateDays, PersonalCounts, daily_counts
from dropdown_rank.logs.schema import DAY, SAMPLE_ORDER
from dropdown_rank.features import ARROW_SCHEMA, record_path

INT32_MAX = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    max_len: int = 50
    lookback_days: float = 30.0
    shard_rows: int = 65536
    personal_days: float = 365.0
    popularity_days: int = 30


class _History:
    """Behaviors of one kind (or all) sorted by a combined (user, ts) int64 key (``ts`` >= 0: validation refuses less)."""

    def __init__(self, user_codes: np.ndarray, ts: np.ndarray, ids: np.ndarray):
        key = user_codes.astype(np.int64) * _TS_SHIFT + ts
        order = np.argsort(key, kind="stable")
        self.key, self.ts, self.ids = key[order], ts[order], ids[order]

    def window(self, user_codes: np.ndarray, ts: np.ndarray, since: np.ndarray | None = None):
        """Index range [start, end) of each request's behaviors strictly before ``ts`` (and >= ``since``)."""
        base = user_codes.astype(np.int64) * _TS_SHIFT
        end = np.searchsorted(self.key, base + ts, side="left")
        start = np.searchsorted(self.key, base if since is None else base + np.maximum(since, 0), side="left")
        return start, end

    def last(self, user_codes, ts, max_len: int):
        """Most-recent-first ids and ts of the last ``max_len`` behaviors before ``ts``, as Arrow lists."""
        start, end = self.window(user_codes, ts)
        lengths = np.minimum(end - start, max_len)
        # Row r takes end[r]-1, end[r]-2, ...: build the flat index of all kept positions at once.
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        step = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        flat = np.repeat(end - 1, lengths) - step
        offsets = pa.array(offsets.astype(np.int32))
        return (pa.ListArray.from_arrays(offsets, pa.array(self.ids[flat], type=pa.string())),
                pa.ListArray.from_arrays(offsets, pa.array(self.ts[flat], type=pa.int64())))


class Histories:
    """Every user's behaviors, indexed for :func:`sample_table`: built from the events of some users (all of them,
    or one partition) and the impressions whose histories are wanted. Ties in ts keep the order of ``events``."""

    def __init__(self, events: pd.DataFrame, impressions: pd.DataFrame):
        self.users = pd.Index(pd.unique(np.concatenate([events["user_id"].to_numpy(), impressions["user_id"].to_numpy()])))
        ev_user = self.users.get_indexer(events["user_id"].to_numpy())
        ev_ts = events["ts"].to_numpy(dtype=np.int64)
        ev_ids = events["id"].to_numpy(dtype=object)
        is_query = (events["kind"] == "query").to_numpy()
        self.queries = _History(ev_user[is_query], ev_ts[is_query], ev_ids[is_query])
        self.items = _History(ev_user[~is_query], ev_ts[~is_query], ev_ids[~is_query])
        self.everything = _History(ev_user, ev_ts, ev_ids)
        self.personal = PersonalCounts(ev_user[is_query], ev_ids[is_query], ev_ts[is_query])


def sample_table(histories: Histories, chunk: pd.DataFrame, candidate_pv: pd.Series, candidate_days: CandidateDays,
                 config: SampleConfig) -> pa.Table:
    """The sample rows of the impressions ``chunk`` (in its order): one row per impression, see the module doc."""
    columns = sample_columns(histories, chunk, candidate_pv, candidate_days, config)
    missing = [name for name in ARROW_SCHEMA.names if name not in columns]
    if missing:
        raise ValueError(f"features.FIELDS defines {missing}, which samples.sample_columns does not compute")
    return pa.table({name: columns[name] for name in ARROW_SCHEMA.names}, schema=ARROW_SCHEMA)


def sample_columns(histories: Histories, chunk: pd.DataFrame, candidate_pv: pd.Series, candidate_days: CandidateDays,
                   config: SampleConfig) -> dict:
    """Every field of ``features.FIELDS`` for the impressions ``chunk``, by name: where each is computed."""
    user = histories.users.get_indexer(chunk["user_id"].to_numpy())
    ts = chunk["ts"].to_numpy(dtype=np.int64)
    candidates = chunk["candidate"].to_numpy(dtype=object)
    personal_count, personal_age = histories.personal.lookup(user, candidates, ts, int(config.personal_days * DAY))
    popularity = candidate_days.lookup(candidates, ts, config.popularity_days)
    q_ids, q_ts = histories.queries.last(user, ts, config.max_len)
    i_ids, i_ts = histories.items.last(user, ts, config.max_len)
    start, end = histories.everything.window(user, ts, since=ts - int(config.lookback_days * DAY))
    return {
        "request_id": pa.array(chunk["request_id"].to_numpy(dtype=object), pa.string()),
        "user_id": pa.array(chunk["user_id"].to_numpy(dtype=object), pa.string()),
        "request_ts": pa.array(ts, pa.int64()),
        "candidate": pa.array(candidates, pa.string()),
        "prefix": pa.array(chunk["prefix"].to_numpy(dtype=object), pa.string()),
        "position": pa.array(chunk["position"].to_numpy(), pa.int32()),
        "label": pa.array(chunk["clicked"].to_numpy(), pa.int8()),
        "query_history": q_ids,
        "query_history_ts": q_ts,
        "item_history": i_ids,
        "item_history_ts": i_ts,
        "activity": pa.array(np.minimum(end - start, INT32_MAX), pa.int32()),
        "candidate_pv": pa.array(candidate_pv.reindex(candidates).fillna(0).to_numpy(np.int32), pa.int32()),
        "user_candidate_count": pa.array(np.minimum(personal_count, INT32_MAX), pa.int32()),
        "user_candidate_age": pa.array(personal_age, pa.int64()),
        "candidate_query_count": pa.array(np.minimum(popularity["queries"], INT32_MAX), pa.int32()),
        "candidate_impressions": pa.array(np.minimum(popularity["impressions"], INT32_MAX), pa.int32()),
        "candidate_clicks": pa.array(np.minimum(popularity["clicks"], INT32_MAX), pa.int32()),
    }


def build_samples(events: pd.DataFrame, impressions: pd.DataFrame, split_of: np.ndarray, candidate_pv: pd.Series,
                  out_dir: str | Path, config: SampleConfig, progress_bar: bool = True) -> dict:
    """Write sample shards for every split named in ``split_of`` (one name per impression row).

    ``events`` are all validated events (any period: history is known at request time).
    ``candidate_pv`` maps candidate text to its training-period impressions. Returns rows per split.
    """
    out_dir = Path(out_dir)
    histories = Histories(events, impressions)
    candidate_days = CandidateDays(daily_counts(events, impressions))
    rows_per_split = {}
    for split in ("train", "valid", "test"):
        part = impressions[split_of == split].sort_values(SAMPLE_ORDER, kind="stable")
        rows_per_split[split] = len(part)
        shards = range(0, len(part), config.shard_rows)
        for shard, lo in enumerate(tqdm(shards, desc=f"samples {split}", unit="shard", disable=not progress_bar)):
            table = sample_table(histories, part.iloc[lo: lo + config.shard_rows], candidate_pv, candidate_days, config)
            write_shard(table, out_dir, split, shard)
    return rows_per_split


def shard_path(out_dir: str | Path, split: str, shard: int) -> Path:
    return Path(out_dir) / split / f"part-{shard:05d}.parquet"


def write_shard(table: pa.Table, out_dir: str | Path, split: str, shard: int) -> None:
    """The shard's Parquet file and its training records, each written atomically."""
    # TensorFlow loads only here: the build's driver and the Beam workers of every earlier step run without it (importing it
    # took the tiny build from 220 to 785 MB)
    from dropdown_rank.records import write_records

    path = shard_path(out_dir, split, shard)
    write_records(table, record_path(path))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
