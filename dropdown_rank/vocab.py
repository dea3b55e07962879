"""Vocabularies of users, queries and items, from the training period only.

A token enters when it occurs at least ``min_count`` times in training-period events and
impressions (queries count both as issued queries and as shown candidates). Tokens are ordered by
count, then text, so the same data always gives the same ids. The models' ``StringLookup`` layers
and the neighbor tables both index into these lists; anything else maps to an OOV bucket.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from dropdown_rank._io import write_parquet

VOCABULARIES = ("users", "queries", "items")


def _count(values: pd.Series, min_count: int) -> pd.DataFrame:
    counts = values.value_counts(sort=False)
    counts = counts[counts >= min_count]
    frame = pd.DataFrame({"token": counts.index.astype(object), "count": counts.to_numpy()})
    return frame.sort_values(["count", "token"], ascending=[False, True], kind="stable").reset_index(drop=True)


def build_vocabularies(train_events: pd.DataFrame, train_impressions: pd.DataFrame, min_count: int = 1) -> dict:
    queries = train_events["id"][train_events["kind"] == "query"]
    items = train_events["id"][train_events["kind"] == "item"]
    users = pd.concat([train_events["user_id"], train_impressions["user_id"]], ignore_index=True)
    return {
        "users": _count(users, min_count),
        "queries": _count(pd.concat([queries, train_impressions["candidate"]], ignore_index=True), min_count),
        "items": _count(items, min_count),
    }


def write_vocabularies(vocabs: dict, out_dir: str | Path) -> None:
    for name, frame in vocabs.items():
        write_parquet(Path(out_dir) / f"{name}.parquet", frame)


def read_vocabulary(vocab_dir: str | Path, name: str) -> list[str]:
    if name not in VOCABULARIES:
        raise ValueError(f"vocabulary must be one of {VOCABULARIES}, not {name!r}")
    return pd.read_parquet(Path(vocab_dir) / f"{name}.parquet")["token"].astype(str).tolist()
