"""Time split: train, valid and test periods, day-aligned (UTC), from the impressions' time range.

The last ``test_days`` days are test, the ``valid_days`` before them valid, and the rest (or the
``train_days`` before valid) train. Graphs, vocabularies and statistics come from the training
period only; a user's history may reach back into any earlier period, since it is known at
request time.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

DAY = 86400
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    valid_days: int = 3
    test_days: int = 3
    train_days: int | None = None


@dataclasses.dataclass(frozen=True)
class TimeSplit:
    """Half-open periods [train_start, valid_start), [valid_start, test_start), [test_start, test_end)."""

    train_start: int
    valid_start: int
    test_start: int
    test_end: int

    def assign(self, ts: np.ndarray) -> np.ndarray:
        """Split name per timestamp; "" outside every period."""
        edges = np.array([self.train_start, self.valid_start, self.test_start, self.test_end])
        slot = np.searchsorted(edges, ts, side="right") - 1
        names = np.array(list(SPLITS) + [""], dtype=object)
        return names[np.where((slot >= 0) & (slot < 3), slot, 3)]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update({f"{k}_iso": pd.Timestamp(v, unit="s", tz="UTC").isoformat() for k, v in dataclasses.asdict(self).items()})
        return out


def time_split(impression_ts: np.ndarray, config: SplitConfig) -> TimeSplit:
    if len(impression_ts) == 0:
        raise ValueError("no impressions to split")
    first_day = int(np.min(impression_ts)) // DAY * DAY
    test_end = (int(np.max(impression_ts)) // DAY + 1) * DAY
    test_start = test_end - config.test_days * DAY
    valid_start = test_start - config.valid_days * DAY
    train_start = first_day if config.train_days is None else valid_start - config.train_days * DAY
    if train_start >= valid_start:
        days = (test_end - first_day) // DAY
        raise ValueError(
            f"the impressions cover {days} day(s): too few for {config.valid_days} valid and "
            f"{config.test_days} test day(s) plus a training period"
        )
    return TimeSplit(max(train_start, first_day), valid_start, test_start, test_end)
