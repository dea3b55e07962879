"""Which query life cycle puts the synthetic world's novelty inside the real logs' range? (issue 26, part 3)

    PYTHONPATH=. python experiments/lifecycle_calibration.py --out experiments/lifecycle_calibration.json [--seed 0]
    PYTHONPATH=. python experiments/lifecycle_calibration.py --out experiments/lifecycle_calibration_oov.json \
        --catalogs 50000 150000 --birth-shares 0 1 --build

Generates the static world (the default world when this ran; its files say ``"scale": "default"``) over a grid of catalog sizes (``catalog``, ``WorldConfig.queries``) and birth shares (death share 0.3,
trends as ``WorldConfig``'s defaults), and measures each with the log profile's own figures (``query_figures``):
the first-time query share after the 7-day warm-up, distinct queries, and the same-as-previous share, beside the
real logs' from ``experiments/profiles``. With ``--build`` each world is also built with the defaults (in a temporary
directory) for the profile's test candidates outside the training vocabulary. No model is trained or compared.
"""
import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import dropdown_rank  # noqa: F401
from dropdown_rank._io import write_json
from dropdown_rank.build import build
from dropdown_rank.evaluate.profile import ProfileConfig, query_figures, vocabulary_figures
from dropdown_rank.logs.synth import SCALES, generate_world, write_world

HERE = Path(__file__).resolve().parent
BASE = "static"  # the world the grid varies; the default scale is the choice this script informed
QUERIES = (50_000, 150_000, 400_000)
BIRTH_SHARES = (0.0, 0.5, 1.0)
DEATH_SHARE = 0.3
REAL = ("aol-dev", "bestbuy")
FIGURES = ("first_time_query_share", "distinct_queries", "queries", "new_to_user_share", "same_as_previous_share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalogs", type=int, nargs="+", default=list(QUERIES))
    parser.add_argument("--birth-shares", type=float, nargs="+", default=list(BIRTH_SHARES))
    parser.add_argument("--build", action="store_true", help="also build each world for its test candidates outside the vocabulary")
    args = parser.parse_args()
    profiles = {name: json.loads((HERE / "profiles" / f"{name}.json").read_text()) for name in REAL}
    real = {name: {**{k: p[k] for k in FIGURES}, "vocabulary": p.get("vocabulary")} for name, p in profiles.items()}
    worlds = []
    for queries in args.catalogs:
        for birth_share in args.birth_shares:
            started = time.perf_counter()
            config = dataclasses.replace(SCALES[BASE], queries=queries, birth_share=birth_share,
                                         death_share=DEATH_SHARE if birth_share else 0.0)
            world = generate_world(config, seed=args.seed, progress=lambda *a: None)
            figures = query_figures(world["events"], ProfileConfig())
            worlds.append({"catalog": queries, "birth_share": birth_share, "death_share": config.death_share,
                           **{k: figures[k] for k in FIGURES}, "impressions": len(world["impressions"]),
                           "ctr": round(world["summary"]["ctr"], 4), "seconds": round(time.perf_counter() - started, 1)})
            if args.build:
                with tempfile.TemporaryDirectory() as tmp:
                    write_world(Path(tmp) / "logs", BASE, args.seed, progress=lambda *a: None, queries=queries,
                                birth_share=birth_share, death_share=config.death_share)
                    build(Path(tmp) / "logs", Path(tmp) / "work", progress=lambda *a: None, progress_bar=False)
                    worlds[-1]["vocabulary"] = {k: v for k, v in vocabulary_figures(Path(tmp) / "work").items() if k != "work"}
            print(worlds[-1])
    write_json(args.out, {"seed": args.seed, "scale": BASE, "warmup_days": ProfileConfig().warmup_days,
                          "trend": {k: getattr(SCALES[BASE], k) for k in ("trend_share", "trend_boost", "trend_days", "fade_days")},
                          "real_logs": real, "worlds": worlds})


if __name__ == "__main__":
    main()
