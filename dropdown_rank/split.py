"""Time split: train, valid and test periods, day-aligned (UTC), from the impressions' time range.

The last ``test_days`` days are test, the ``valid_days`` before them valid, and the rest (or the
``train_days`` before valid) train. The first ``warmup_days`` of the training period are graph
warm-up: their events build vocabularies and graphs, but their impressions are not training rows
(a row of the first day would see an empty graph). Vocabularies and statistics come from the
training period only, graphs from the days before each row's own day; a user's history may reach
back into any earlier period, since it is known at request time.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from dropdown_rank.logs.schema import DAY

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    valid_days: int = 3
    test_days: int = 3
    train_days: int | None = None
    warmup_days: int = 3

    def __post_init__(self):
        if self.valid_days < 1 or self.test_days < 1:
            raise ValueError(f"valid and test periods need at least 1 day each (got {self.valid_days} and {self.test_days})")
        if self.warmup_days < 0:
            raise ValueError(f"--warmup-days must be >= 0, not {self.warmup_days}")
        if self.train_days is not None and self.train_days <= self.warmup_days:
            raise ValueError(f"--train-days {self.train_days} leaves no training rows after the {self.warmup_days} graph "
                             "warm-up day(s) (--warmup-days); use more training days")


@dataclasses.dataclass(frozen=True)
class TimeSplit:
    """Half-open periods [train_start, valid_start), [valid_start, test_start), [test_start, test_end).

    Training rows start at ``rows_start`` (after the graph warm-up); events count from ``train_start``.
    """

    train_start: int
    valid_start: int
    test_start: int
    test_end: int
    rows_start: int

    def assign(self, ts: np.ndarray) -> np.ndarray:
        """Split name of each impression timestamp; "" outside every period (warm-up included)."""
        edges = np.array([self.rows_start, self.valid_start, self.test_start, self.test_end])
        slot = np.searchsorted(edges, ts, side="right") - 1
        names = np.array(list(SPLITS) + [""], dtype=object)
        return names[np.where((slot >= 0) & (slot < 3), slot, 3)]

    def in_training_period(self, ts) -> np.ndarray:
        """Whether each time is in [train_start, valid_start): what the vocabularies and candidate PV count (both engines)."""
        ts = np.asarray(ts)
        return (ts >= self.train_start) & (ts < self.valid_start)

    def in_graph_period(self, ts) -> np.ndarray:
        """Whether each time is in [train_start, test_end): the events the graph snapshots are built from (both engines)."""
        ts = np.asarray(ts)
        return (ts >= self.train_start) & (ts < self.test_end)

    def snapshot_days(self) -> np.ndarray:
        """Day starts of the graph snapshots a build makes: one per day with samples, plus ``test_end``
        (the graph of the day after the log, which ``export --graph`` with this build serves)."""
        return np.arange(self.rows_start, self.test_end + 1, DAY, dtype=np.int64)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update({f"{k}_iso": pd.Timestamp(v, unit="s", tz="UTC").isoformat() for k, v in dataclasses.asdict(self).items()})
        return out


def time_split(impression_ts: np.ndarray, config: SplitConfig, source: str = "the impressions") -> TimeSplit:
    """The periods for impressions at ``impression_ts``; ``source`` (the impressions file) names them in errors."""
    if len(impression_ts) == 0:
        raise ValueError(f"{source}: no impressions to split")
    first_day = int(np.min(impression_ts)) // DAY * DAY
    test_end = (int(np.max(impression_ts)) // DAY + 1) * DAY
    test_start = test_end - config.test_days * DAY
    valid_start = test_start - config.valid_days * DAY
    train_start = first_day if config.train_days is None else valid_start - config.train_days * DAY
    train_start = max(train_start, first_day)
    rows_start = train_start + config.warmup_days * DAY
    if rows_start >= valid_start:
        days = (test_end - first_day) // DAY
        needed = config.valid_days + config.test_days + config.warmup_days + 1
        raise ValueError(
            f"{source}: the impressions cover {days} day(s): too few for {config.valid_days} valid and "
            f"{config.test_days} test day(s) plus {config.warmup_days} graph warm-up day(s) and a training period "
            f"(at least {needed} days are needed)"
        )
    check_days_hold_data(impression_ts, train_start, valid_start, test_start, test_end, source)
    return TimeSplit(train_start, valid_start, test_start, test_end, rows_start)


def check_days_hold_data(impression_ts: np.ndarray, train_start: int, valid_start: int, test_start: int, test_end: int,
                         source: str) -> None:
    """Refuse periods that are mostly empty days, before the build spends memory on them (a graph snapshot a day):
    more than ten times as many days as days with impressions, plus 60 (a stray impression in 2096 made 25,841 daily
    snapshots; a log sampled one day a week still builds). Refuse validation days with no impression at all (the
    test days end with the last impression, so they hold one). ``impression_ts`` may be one time per hour with
    impressions (the Beam engine): only days are counted."""
    ts = np.asarray(impression_ts, dtype=np.int64)
    busy = np.unique(ts[(ts >= train_start) & (ts < test_end)] // DAY)
    span = (test_end - train_start) // DAY
    if span > 10 * len(busy) + 60:
        median = int(busy[len(busy) // 2])
        stray = busy[np.abs(busy - median) > 365]
        raise ValueError(f"{source}: the impressions span {span:,} days ({_iso(train_start)} to {_iso(test_end - DAY)}) but only "
                         f"{len(busy):,} of them hold any, so the periods and their daily graph snapshots would be mostly "
                         f"empty days; {len(stray):,} day(s) with impressions lie more than a year from the median day "
                         f"{_iso(median * DAY)}" + (f" (first: {_iso(int(stray[0]) * DAY)})" if len(stray) else "")
                         + ": remove stray rows (a wrong ts), or split the log")
    if not np.any((ts >= valid_start) & (ts < test_start)):
        raise ValueError(f"{source}: the validation days ({_iso(valid_start)} to {_iso(test_start - DAY)}) hold no impressions; "
                         f"choose --valid-days/--test-days that cover days with impressions")


def _iso(ts: int) -> str:
    return f"{pd.Timestamp(ts, unit='s'):%Y-%m-%d}"
