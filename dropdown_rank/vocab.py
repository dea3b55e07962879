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

VOCABULARIES = ("users", "queries", "items")


DAY = 86400


def _count(values: pd.Series, ts: pd.Series, min_count: int) -> pd.DataFrame:
    occurrences = pd.DataFrame({"token": values.to_numpy(dtype=object), "ts": ts.to_numpy(dtype=np.int64)})
    occurrences = occurrences.sort_values("ts", kind="stable")
    nth = occurrences.groupby("token", sort=False).cumcount() == min_count - 1
    known = occurrences[nth.to_numpy()].set_index("token")["ts"]
    counts = occurrences["token"].value_counts(sort=False)
    counts = counts[counts >= min_count]
    frame = pd.DataFrame({"token": counts.index.astype(object), "count": counts.to_numpy()})
    frame["known_since"] = (known.reindex(frame["token"]).to_numpy() // DAY + 1) * DAY
    return frame.sort_values(["count", "token"], ascending=[False, True], kind="stable").reset_index(drop=True)


def build_vocabularies(train_events: pd.DataFrame, train_impressions: pd.DataFrame, min_count: int = 1) -> dict:
    """``{name: DataFrame(token, count, known_since)}`` from the training period's events and impressions."""
    is_query = train_events["kind"] == "query"
    queries, items = train_events[is_query], train_events[~is_query]
    return {
        "users": _count(pd.concat([train_events["user_id"], train_impressions["user_id"]], ignore_index=True),
                        pd.concat([train_events["ts"], train_impressions["ts"]], ignore_index=True), min_count),
        "queries": _count(pd.concat([queries["id"], train_impressions["candidate"]], ignore_index=True),
                          pd.concat([queries["ts"], train_impressions["ts"]], ignore_index=True), min_count),
        "items": _count(items["id"], items["ts"], min_count),
    }


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
