"""Vocabularies of users, queries and items, from the training period only.

A token enters when it occurs at least ``min_count`` times in training-period events and
impressions (queries count both as issued queries and as shown candidates). Tokens are ordered by
count, then text, so the same data always gives the same ids. The models' ``StringLookup`` layers
and the neighbor tables both index into these lists; anything else maps to an OOV bucket.

**Point in time.** Each token also records ``known_since``: the start of the UTC day after the
day of its ``min_count``-th occurrence. A vocabulary refreshed daily knows the token from then on,
so a training row of an earlier day reads it as OOV, exactly as serving reads an id that first
appears after the model was exported. This is what trains the OOV vectors: with a vocabulary that
knows every training id from the start, the OOV rows never receive a gradient, and every unseen
user, query and item at test time would share an untrained random vector.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import write_parquet
from dropdown_rank.logs.schema import DAY

VOCABULARIES = ("users", "queries", "items")




def occurrence_summary(values, ts, keep: int) -> tuple[pd.Series, pd.DataFrame]:
    """What a vocabulary needs of some occurrences: count per token, and each token's ``keep`` earliest ts.

    Summaries of any partition of the occurrences merge (:func:`merge_summaries`) into the summary of all.
    """
    occurrences = pd.DataFrame({"token": np.asarray(values, dtype=object), "ts": np.asarray(ts, dtype=np.int64)})
    counts = occurrences["token"].value_counts(sort=False)
    earliest = occurrences.sort_values("ts", kind="stable").groupby("token", sort=False).head(keep)
    return counts, earliest.reset_index(drop=True)


def merge_summaries(summaries, keep: int) -> tuple[pd.Series, pd.DataFrame]:
    summaries = list(summaries)
    counts = pd.concat([c for c, _ in summaries]).groupby(level=0, sort=False).sum()
    earliest = pd.concat([e for _, e in summaries], ignore_index=True)
    earliest = earliest.sort_values("ts", kind="stable").groupby("token", sort=False).head(keep)
    return counts, earliest.reset_index(drop=True)


def vocabulary_frame(counts: pd.Series, earliest: pd.DataFrame, min_count: int) -> pd.DataFrame:
    """(token, count, known_since) of the tokens counted at least ``min_count`` times, in vocabulary order."""
    counts = counts[counts >= min_count]
    nth = earliest[earliest.groupby("token", sort=False).cumcount().to_numpy() == min_count - 1]
    known = nth.set_index("token")["ts"]
    frame = pd.DataFrame({"token": counts.index.astype(object), "count": counts.to_numpy()})
    frame["known_since"] = (known.reindex(frame["token"]).to_numpy() // DAY + 1) * DAY
    return order_vocabulary(frame)


def order_vocabulary(frame: pd.DataFrame) -> pd.DataFrame:
    """By count, then text: the same data always gives the same ids (also for a vocabulary built in parts)."""
    return frame.sort_values(["count", "token"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _count(values: pd.Series, ts: pd.Series, min_count: int) -> pd.DataFrame:
    return vocabulary_frame(*occurrence_summary(values.to_numpy(dtype=object), ts.to_numpy(dtype=np.int64), min_count), min_count)


def vocabulary_occurrences(train_events: pd.DataFrame, train_impressions: pd.DataFrame) -> dict:
    """``{name: (tokens, ts)}``: what each vocabulary counts (queries count as issued queries and as candidates)."""
    is_query = (train_events["kind"] == "query").to_numpy()
    ev_ts = train_events["ts"].to_numpy(dtype=np.int64)
    ev_ids = train_events["id"].to_numpy(dtype=object)
    imp_ts = train_impressions["ts"].to_numpy(dtype=np.int64)
    return {
        "users": (np.concatenate([train_events["user_id"].to_numpy(dtype=object), train_impressions["user_id"].to_numpy(dtype=object)]),
                  np.concatenate([ev_ts, imp_ts])),
        "queries": (np.concatenate([ev_ids[is_query], train_impressions["candidate"].to_numpy(dtype=object)]),
                    np.concatenate([ev_ts[is_query], imp_ts])),
        "items": (ev_ids[~is_query], ev_ts[~is_query]),
    }


def build_vocabularies(train_events: pd.DataFrame, train_impressions: pd.DataFrame, min_count: int = 1) -> dict:
    """``{name: DataFrame(token, count, known_since)}`` from the training period's events and impressions."""
    return {name: vocabulary_frame(*occurrence_summary(tokens, ts, min_count), min_count)
            for name, (tokens, ts) in vocabulary_occurrences(train_events, train_impressions).items()}


def write_vocabularies(vocabs: dict, out_dir: str | Path) -> None:
    for name, frame in vocabs.items():
        write_parquet(Path(out_dir) / f"{name}.parquet", frame)


def read_vocabulary(vocab_dir: str | Path, name: str) -> list[str]:
    if name not in VOCABULARIES:
        raise ValueError(f"vocabulary must be one of {VOCABULARIES}, not {name!r}")
    return pd.read_parquet(Path(vocab_dir) / f"{name}.parquet")["token"].astype(str).tolist()


def read_known_since(vocab_dir: str | Path, name: str) -> np.ndarray:
    """Per token of :func:`read_vocabulary`, the day start (epoch seconds) from which it is known."""
    return pd.read_parquet(Path(vocab_dir) / f"{name}.parquet", columns=["known_since"])["known_since"].to_numpy(np.int64)
