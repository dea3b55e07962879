"""How the reports' candidate-freshness buckets relate to the synthetic world's true query births (issue 26).

    PYTHONPATH=. python experiments/freshness_truth.py --study STUDY --out experiments/default_world_issue26/freshness_truth.json

``STUDY`` is a seed study's directory on a synthetic world with a life cycle (``logs/query_life.parquet`` and ``work/``).
Per split and freshness bucket (``evaluate.slices.candidate_freshness``, default ``fresh_days``): impressions, clicks,
and the shares of those impressions whose candidate was born during the period, born within 7 days before the request,
or trending. Reads only the build's vocabulary and the world's truth; no model.
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import dropdown_rank  # noqa: F401
from dropdown_rank._io import write_json
from dropdown_rank.evaluate.slices import SliceConfig, candidate_freshness
from dropdown_rank.logs.schema import DAY
from dropdown_rank.workdir import Work, read_samples

RECENT_DAYS = 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = Work.open(args.study / "work")
    life = pd.read_parquet(args.study / "logs" / "query_life.parquet").set_index("query")
    first = life["born_ts"].min()  # queries alive from the start carry the period's first second
    result = {"study": str(args.study), "fresh_days": SliceConfig().fresh_days, "recent_days": RECENT_DAYS}
    for split in ("valid", "test"):
        samples = read_samples(work.samples_dir, split, columns=["candidate", "request_ts", "label"])
        candidates, request_ts = samples["candidate"].to_numpy(), samples["request_ts"].to_numpy()
        fresh = candidate_freshness(candidates, request_ts, work.vocabulary("queries"), work.known_since("queries"),
                                    SliceConfig().fresh_days)
        born = life["born_ts"].reindex(candidates).to_numpy()
        born_in_period = born > first
        recent = born_in_period & (request_ts - born < RECENT_DAYS * DAY)
        trending = life["trending"].reindex(candidates).to_numpy().astype(bool)
        buckets = {}
        for bucket in np.unique(fresh):
            mask = fresh == bucket
            buckets[bucket] = {"impressions": int(mask.sum()), "clicks": int(samples["label"][mask].sum()),
                               "born_during_period": round(float(born_in_period[mask].mean()), 3),
                               f"born_within_{RECENT_DAYS}_days": round(float(recent[mask].mean()), 3),
                               "trending": round(float(trending[mask].mean()), 3)}
        result[split] = {"buckets": buckets, f"impressions_born_within_{RECENT_DAYS}_days": int(recent.sum())}
        print(split, result[split])
    write_json(args.out, result)


if __name__ == "__main__":
    main()
