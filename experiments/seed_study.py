"""The seed study: base_20 / base_50 against the GNN-20 variants, end to end, on any logs.

    python experiments/seed_study.py --out study/                  # the default synthetic world
    python experiments/seed_study.py --logs my_logs/ --out study/   # your logs, in the log schema

Steps: (synthesize the world unless --logs is given) → build → train base_20, base_50, hgcn_20,
attention_20, hgcn*_20, attention*_20 → one evaluation report with intervals and storage. A model
whose run already has ``metrics.json`` is reused, so an interrupted study continues where it
stopped. Writes ``OUT/study.json`` (timings, AUCs) and ``OUT/report/report.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import dropdown_rank  # noqa: F401  (sets the Keras/oneDNN environment before tensorflow loads)
from dropdown_rank._io import write_json
from dropdown_rank.build import BuildConfig, build
from dropdown_rank.evaluate.report import evaluate
from dropdown_rank.logs.synth import write_world
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import TrainConfig, train

MODELS = [
    ModelConfig(kind="base", seq_len=20),
    ModelConfig(kind="base", seq_len=50),
    ModelConfig(kind="hgcn", seq_len=20),
    ModelConfig(kind="attention", seq_len=20),
    ModelConfig(kind="hgcn", seq_len=20, id_time_only=True),
    ModelConfig(kind="attention", seq_len=20, id_time_only=True),
]


def run_name(config: ModelConfig) -> str:
    return config.name.replace("*", "_star")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", help="log directory in the schema (default: generate the synthetic world)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--scale", choices=("tiny", "small", "default"), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)

    out = Path(args.out)
    timings = {}
    started = time.perf_counter()
    logs = Path(args.logs) if args.logs else out / "logs"
    if not args.logs:
        clock = time.perf_counter()
        write_world(logs, scale=args.scale, seed=args.seed)
        timings["synth"] = time.perf_counter() - clock
    clock = time.perf_counter()
    build(logs, out / "work", BuildConfig())
    timings["build"] = time.perf_counter() - clock

    results = {}
    for config in MODELS:
        run = out / "runs" / run_name(config)
        if (run / "metrics.json").exists():
            print(f"seed study: reusing {run}")
            results[config.name] = json.loads((run / "metrics.json").read_text())
            continue
        clock = time.perf_counter()
        results[config.name] = train(out / "work", run, config, TrainConfig(epochs=args.epochs, seed=args.seed))
        timings[f"train {config.name}"] = time.perf_counter() - clock

    clock = time.perf_counter()
    evaluate(out / "work", [out / "runs" / run_name(c) for c in MODELS], out / "report", replicates=args.bootstrap, seed=args.seed)
    timings["evaluate"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    write_json(out / "study.json", {
        "logs": str(logs), "scale": None if args.logs else args.scale, "seed": args.seed,
        "test_auc": {name: m["test_auc"] for name, m in results.items()},
        "steady_examples_per_second": {name: m["steady_examples_per_second"] for name, m in results.items()},
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    })
    print("\nseed study (exact test AUC):")
    for name, metrics in results.items():
        print(f"  {name:14s} {metrics['test_auc']:.4f}")
    print(f"report: {out / 'report' / 'report.md'}; total {timings['total'] / 60:.1f} min")


if __name__ == "__main__":
    main()
