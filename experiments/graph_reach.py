"""How often the q2q graph can say anything about a clicked candidate: the reach behind the relation levers.

    python experiments/graph_reach.py --work study/work --split valid --out reach.json

For every impression of a request with a click, in the request's own daily snapshot (the latest one
starting at or before the request, as the model reads it), by request kind (``repeat``: the user issued
the clicked query before; ``new intent``: not) and by clicked or not (a feature that is as common among
the candidates not clicked cannot rank them):

* ``candidate_in_graph``: the candidate has at least one q2q neighbor;
* ``related``: it and one of the last ``--seq-len`` history queries (other than itself) are neighbors, either
  way (what ``--relations`` reads);
* ``two_hops``: not related, but sharing a neighbor with one of them (what ``--two-hops`` adds);
* ``history_in_graph``: at least one of those history queries has a neighbor.

Counts only: no model is read. Writes ``--out`` (JSON) and prints a table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import write_json
from dropdown_rank.workdir import Work
from dropdown_rank.evaluate.slices import NEW_INTENT, NO_CLICK, REPEAT, request_kind
from dropdown_rank.workdir import read_samples

MEASURES = ("candidate_in_graph", "history_in_graph", "related", "two_hops")


def reach(work: Work, split: str, seq_len: int) -> pd.DataFrame:
    """One row per impression of a request with a click: its request kind, label and each of :data:`MEASURES` (bool)."""
    columns = ["request_id", "candidate", "label", "request_ts", "user_candidate_count", "query_history"]
    samples = read_samples(work.samples_dir, split, columns=columns)
    kind = request_kind(pd.factorize(samples["request_id"])[0], samples["label"].to_numpy(), samples["user_candidate_count"].to_numpy())
    clicked = samples[kind != NO_CLICK].assign(kind=kind[kind != NO_CLICK])
    tables = work.daily_tables("q2q")
    index = pd.Index(tables.nodes)
    snapshot = np.maximum(np.searchsorted(tables.snapshot_ts, clicked["request_ts"].to_numpy(), side="right") - 1, 0)
    candidate = index.get_indexer(clicked["candidate"])
    rows, day_ids = [], {}
    for day, node, history in zip(snapshot, candidate, clicked["query_history"]):
        if day not in day_ids:
            day_ids[day] = tables[day].ids
        ids = day_ids[day]
        own = set(ids[node][ids[node] > 0]) if node > 0 else set()
        recent = [h for h in index.get_indexer([q for q in history[:seq_len] if q != ""]) if h > 0 and h != node]
        neighbors = [set(ids[h][ids[h] > 0]) for h in recent]
        related = [node in n or h in own for h, n in zip(recent, neighbors)]
        rows.append({"candidate_in_graph": bool(own), "history_in_graph": any(neighbors), "related": any(related),
                     "two_hops": any(not r and bool(own & n) for r, n in zip(related, neighbors))})
    return pd.concat([clicked[["kind", "label"]].reset_index(drop=True), pd.DataFrame(rows, columns=list(MEASURES))], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    frame = reach(Work.open(args.work), args.split, args.seq_len)
    result = {"work": str(args.work.resolve()), "split": args.split, "seq_len": args.seq_len, "kinds": {}}
    print(f"| requests with a click ({args.split}) | impressions | " + " | ".join(MEASURES) + " |")
    print("|" + " --- |" * (len(MEASURES) + 2))
    for kind, rows in [("all", frame), *((k, frame[frame["kind"] == k]) for k in (REPEAT, NEW_INTENT))]:
        for label, name in ((1, "clicked"), (0, "not clicked")):
            chosen = rows[rows["label"] == label]
            shares = {m: round(float(chosen[m].mean()), 4) if len(chosen) else None for m in MEASURES}
            result["kinds"].setdefault(kind, {})[name] = {"impressions": len(chosen), **shares}
            print(f"| {kind}, {name} | {len(chosen):,} | " + " | ".join(f"{100 * shares[m]:.1f}%" for m in MEASURES) + " |")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
