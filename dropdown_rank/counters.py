"""Point-in-time counters of a sample row: what a production dropdown ranker knows beyond the sequences.

Each is computed at build time from data strictly before the row's request, so serving can compute
the same value from its own logs (README, Serving, says how):

* **personal** (:class:`PersonalCounts`, per user): ``user_candidate_count``, how often the user issued
  the candidate as a query in the ``personal_days`` before ``request_ts``, and ``user_candidate_age``,
  seconds since the last time (-1: never in that window). This is the long-window history the
  last-L sequences do not reach, and the "personal count" baseline users already have.
* **candidate** (:class:`CandidateDays`, global): ``candidate_query_count`` (the candidate issued as a
  query by anybody), ``candidate_impressions`` and ``candidate_clicks`` (shown and clicked in the
  dropdown), each summed over the ``popularity_days`` whole days before the request's day. Earlier
  days only: a serving system refreshes these once a day, so the request's own day is never in them.

Both are vectorized: events are sorted once by an int64 key, and every row's window is two
``searchsorted`` calls. :class:`CandidateDays` is built from per-(candidate, day) counts, the form
the Beam build aggregates with a ``CombinePerKey`` and hands to every worker.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dropdown_rank.logs.schema import DAY

_TS_SHIFT = np.int64(1) << 33  # > 272 years of seconds: in a (key, ts) int64, the ts part never reaches the key part
_DAY_SHIFT = np.int64(1) << 22  # > 11,000 years of days
DAILY_COLUMNS = ("queries", "impressions", "clicks")


class PersonalCounts:
    """Each user's queries, indexed by (user, query, ts): the user's own past count of a candidate.

    ``user_codes`` index users (any integer coding shared with :meth:`lookup`); ``queries`` are the
    query texts, ``ts`` their times."""

    def __init__(self, user_codes: np.ndarray, queries: np.ndarray, ts: np.ndarray):
        self.texts = pd.Index(pd.unique(queries))
        pair = self._pair(user_codes, self.texts.get_indexer(queries))
        self.pairs = np.unique(pair)
        self.ts0 = int(ts.min()) if len(ts) else 0
        key = np.searchsorted(self.pairs, pair).astype(np.int64) * _TS_SHIFT + (ts - self.ts0)
        order = np.argsort(key, kind="stable")
        self.key, self.ts = key[order], ts[order]

    def _pair(self, user_codes, text_codes) -> np.ndarray:
        return user_codes.astype(np.int64) * (len(self.texts) + 1) + text_codes

    def lookup(self, user_codes: np.ndarray, candidates: np.ndarray, ts: np.ndarray, window_seconds: int):
        """``(count, age)`` per row: queries equal to the candidate in ``[ts - window, ts)``, and seconds since
        the latest of them (-1 when there is none)."""
        if not len(self.pairs):
            return np.zeros(len(ts), np.int32), np.full(len(ts), -1, np.int64)
        text = self.texts.get_indexer(candidates)
        pair = self._pair(user_codes, text)
        at = np.minimum(np.searchsorted(self.pairs, pair), len(self.pairs) - 1)
        known = (text >= 0) & (self.pairs[at] == pair)
        base = at.astype(np.int64) * _TS_SHIFT - self.ts0
        end = np.searchsorted(self.key, base + np.maximum(ts, self.ts0), side="left")
        start = np.searchsorted(self.key, base + np.maximum(ts - window_seconds, self.ts0), side="left")
        count = np.where(known, np.maximum(end - start, 0), 0)
        age = np.where(count > 0, ts - self.ts[np.maximum(end - 1, 0)], -1)
        return count.astype(np.int64), age.astype(np.int64)


def daily_counts(events: pd.DataFrame, impressions: pd.DataFrame) -> pd.DataFrame:
    """Per (candidate text, day start): ``queries`` (query events), ``impressions`` and ``clicks`` (dropdown rows).
    The exact sum of the parts' counts is the whole's: the Beam build adds them up per key."""
    queries = events.loc[events["kind"] == "query", ["id", "ts"]]
    parts = [
        pd.DataFrame({"text": queries["id"].to_numpy(), "day": queries["ts"].to_numpy() // DAY * DAY, "queries": 1}),
        pd.DataFrame({"text": impressions["candidate"].to_numpy(), "day": impressions["ts"].to_numpy() // DAY * DAY,
                      "impressions": 1, "clicks": impressions["clicked"].to_numpy().astype(np.int64)}),
    ]
    frame = pd.concat(parts, ignore_index=True).fillna(0)
    return sum_daily([frame])


def sum_daily(frames) -> pd.DataFrame:
    """Per-(text, day) sums of several :func:`daily_counts` frames."""
    frame = pd.concat(list(frames), ignore_index=True)
    if frame.empty:
        return pd.DataFrame({"text": pd.Series([], dtype=object), "day": pd.Series([], dtype=np.int64),
                             **{c: pd.Series([], dtype=np.int64) for c in DAILY_COLUMNS}})
    frame = frame.groupby(["text", "day"], sort=True, as_index=False)[list(DAILY_COLUMNS)].sum()
    return frame.astype({"day": np.int64, **{c: np.int64 for c in DAILY_COLUMNS}})


class CandidateDays:
    """Windowed sums of a candidate's daily counts: prefix sums over rows sorted by (text, day)."""

    def __init__(self, daily: pd.DataFrame):
        self.texts = pd.Index(pd.unique(daily["text"].to_numpy()))
        self.day0 = int(daily["day"].min()) if len(daily) else 0
        key = (self.texts.get_indexer(daily["text"].to_numpy()).astype(np.int64) * _DAY_SHIFT
               + (daily["day"].to_numpy(np.int64) - self.day0) // DAY)
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.cumulative = {c: np.concatenate([[0], np.cumsum(daily[c].to_numpy(np.int64)[order])]) for c in DAILY_COLUMNS}

    def lookup(self, candidates: np.ndarray, ts: np.ndarray, days: int) -> dict:
        """Per row, each column summed over the ``days`` whole days before the day of ``ts``."""
        text = self.texts.get_indexer(candidates)
        today = (ts // DAY * DAY - self.day0) // DAY
        base = np.maximum(text, 0).astype(np.int64) * _DAY_SHIFT
        end = np.searchsorted(self.key, base + np.clip(today, 0, None), side="left")
        start = np.searchsorted(self.key, base + np.clip(today - days, 0, None), side="left")
        return {c: np.where(text >= 0, values[end] - values[start], 0).astype(np.int64) for c, values in self.cumulative.items()}
