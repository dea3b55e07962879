"""Convert the Best Buy search→click log (``user,sku,category,query,click_time,query_time``) into
the log schema.

* Each row's query becomes a ``query`` event at ``query_time``; each click becomes an ``item`` event
  (the ``sku``) at ``click_time``. Query text is normalized (lower case, single spaces, trimmed), as
  a dropdown would match it; the number of rewritten queries is reported.
* The log has no dropdown impressions, so they are *reconstructed*: every query event becomes one
  request whose prefix is the query's first ``prefix_len`` characters and whose candidates are the
  most frequent queries with that prefix among queries issued on **earlier days** (a logging
  engine only knows the past; its index is rebuilt daily), up to ``candidates`` in all. The issued
  query is always shown (it replaces the last candidate if needed) and is the one clicked. Real impressions are better; this keeps the
  whole pipeline runnable on real behavior.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import write_json, write_parquet
from dropdown_rank.logs.schema import DAY, SchemaError, parse_timestamps

BESTBUY_COLUMNS = ("user", "sku", "category", "query", "click_time", "query_time")


def normalize_query(text: pd.Series) -> pd.Series:
    return text.str.lower().str.replace(r"\s+", " ", regex=True).str.strip()


def read_bestbuy(src: str | Path) -> pd.DataFrame:
    """``train.csv`` and ``test.csv`` of the Best Buy log, concatenated (both cover the same period)."""
    frames = []
    for name in ("train.csv", "test.csv"):
        path = Path(src) / name
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in BESTBUY_COLUMNS if c not in frame.columns]
        if missing:
            raise SchemaError(str(path), missing[0], "missing column of the Best Buy log")
        frame["source"] = str(path)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def bestbuy_to_logs(raw: pd.DataFrame, prefix_len: int = 3, candidates: int = 8) -> dict:
    """Events and reconstructed impressions from the raw Best Buy rows, plus a conversion summary."""
    query = normalize_query(raw["query"])
    rewritten = int((query != raw["query"]).sum())
    empty = (query == "").to_numpy()
    raw, query = raw[~empty], query[~empty]
    query_ts, bad_q = parse_timestamps(raw["query_time"])
    click_ts, bad_c = parse_timestamps(raw["click_time"])
    bad = bad_q | bad_c
    if bad.any():
        rows = np.flatnonzero(bad)
        raise SchemaError(raw["source"].iloc[rows[0]], "query_time" if bad_q.any() else "click_time", "unparseable time", rows + 1)
    users = raw["user"].to_numpy(dtype=object)
    events = pd.DataFrame({
        "user_id": np.concatenate([users, users]),
        "ts": np.concatenate([query_ts, click_ts]),
        "kind": np.repeat(np.array(["query", "item"], dtype=object), len(raw)),
        "id": np.concatenate([query.to_numpy(dtype=object), raw["sku"].to_numpy(dtype=object)]),
    }).sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)

    requests = pd.DataFrame({"user_id": users, "ts": query_ts, "issued": query.to_numpy(dtype=object)})
    requests = requests.sort_values("ts", kind="stable").reset_index(drop=True)
    requests["request_id"] = [f"bb{i:06d}" for i in range(len(requests))]
    requests["prefix"] = requests["issued"].str[:prefix_len]
    impressions = _reconstruct_impressions(requests, candidates)
    summary = {
        "rows": int(len(raw) + empty.sum()),
        "rows_with_empty_query_skipped": int(empty.sum()),
        "queries_rewritten_by_normalization": rewritten,
        "events": len(events),
        "requests": len(requests),
        "impressions": len(impressions),
        "prefix_len": prefix_len,
        "candidates": candidates,
    }
    return {"events": events, "impressions": impressions, "summary": summary}


def _reconstruct_impressions(requests: pd.DataFrame, candidates: int) -> pd.DataFrame:
    """Candidates from a suggestion index rebuilt daily from the queries of earlier days.

    For each (prefix, request day) the index holds every query with that prefix seen on an earlier
    day, ranked by how often it was issued before that day. Rows: sum over prefixes of
    (distinct queries x request days), not the quadratic pairs of requests.
    """
    requests = requests.assign(day=(requests["ts"] // DAY).astype(np.int64))
    key, keys = pd.factorize(pd.MultiIndex.from_arrays([requests["prefix"], requests["issued"]]))
    occurrence = np.sort(key.astype(np.int64) * 1_000_000 + requests["day"].to_numpy())
    first_day = requests.assign(key=key).groupby("key")["day"].min()
    known = pd.DataFrame({"key": first_day.index, "first_day": first_day.to_numpy(),
                          "prefix": keys.get_level_values(0)[first_day.index], "candidate": keys.get_level_values(1)[first_day.index]})
    request_days = requests[["prefix", "day"]].drop_duplicates()
    index = known.merge(request_days, on="prefix")
    index = index[index["first_day"] < index["day"]]
    keys_arr = index["key"].to_numpy(dtype=np.int64)
    index["prior"] = np.searchsorted(occurrence, keys_arr * 1_000_000 + index["day"].to_numpy()) - np.searchsorted(occurrence, keys_arr * 1_000_000)
    index = index.sort_values(["prefix", "day", "prior", "candidate"], ascending=[True, True, False, True])
    index = index[index.groupby(["prefix", "day"]).cumcount() < candidates - 1]
    shown = requests[["request_id", "user_id", "ts", "prefix", "issued", "day"]].merge(index[["prefix", "day", "candidate", "prior"]], on=["prefix", "day"])
    issued = requests.assign(candidate=requests["issued"], prior=-1)
    shown = pd.concat([shown[issued.columns.drop("key", errors="ignore")], issued], ignore_index=True)
    shown = shown.drop_duplicates(["request_id", "candidate"], keep="first")
    # Keep the issued query even when it ranks outside the top: drop the lowest other candidate.
    shown = shown.sort_values(["request_id", "prior", "candidate"], ascending=[True, False, True], kind="stable")
    shown = shown[(shown.groupby("request_id").cumcount() < candidates - 1) | (shown["candidate"] == shown["issued"])]
    shown = shown.sort_values(["request_id", "prior", "candidate"], ascending=[True, False, True], kind="stable")
    shown["position"] = shown.groupby("request_id").cumcount().astype(np.int32)
    shown["clicked"] = (shown["candidate"] == shown["issued"]).astype(np.int8)
    return shown[["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"]].reset_index(drop=True)


def convert_bestbuy(src: str | Path, out: str | Path, prefix_len: int = 3, candidates: int = 8, progress=print) -> dict:
    logs = bestbuy_to_logs(read_bestbuy(src), prefix_len=prefix_len, candidates=candidates)
    out = Path(out)
    write_parquet(out / "events.parquet", logs["events"])
    write_parquet(out / "impressions.parquet", logs["impressions"])
    write_json(out / "conversion.json", logs["summary"])
    progress(
        f"bestbuy: {logs['summary']['events']:,} events, {logs['summary']['impressions']:,} reconstructed "
        f"impressions written to {out} ({logs['summary']['queries_rewritten_by_normalization']:,} queries normalized)"
    )
    return logs["summary"]
