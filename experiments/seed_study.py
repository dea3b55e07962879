"""The seed study: base_20 / base_50 against the GNN-20 variants, several training seeds each, end to end, on any logs.

    python experiments/seed_study.py --out study/                        # the default synthetic world, seeds 0 1 2
    python experiments/seed_study.py --logs my_logs/ --out study/         # your logs, in the log schema
    python experiments/seed_study.py --out study/ --seeds 0 --scale tiny  # one seed, a tiny world (a smoke run)

Steps: (synthesize the world unless --logs is given) → build → train every model once per training
seed → one evaluation report with seed-aware intervals, baselines, OOV shares and storage.

* Models: base_20, base_50, hgcn_20, gat_20, hgcn*_20, gat*_20, and the position-bias
  (PAL) variants base_20+pal and hgcn_20+pal (``--no-position-bias`` leaves those out). The
  candidate-history relation variants hgcn_20+rel, hgcn_20+rel+pal, hgcn_20+rel+2hop, hgcn_20+rel+ses and
  hgcn*_20+rel are known too. Every
  model reads the request features (``model.py``); the ablations base_20-nofeat and hgcn_20-nofeat
  (sequences only) are known too. ``--models NAME ...`` picks any of them.
* Seeds: ``--seed`` fixes the world (synthesis) and nothing else: there is one world and one build.
  ``--seeds`` are the **training** seeds (initialization, data order); each model is trained once per
  seed, in ``runs/<slug>/seed<k>`` (``ModelConfig.slug``: ``*`` spelled ``_star``, ``+`` spelled ``_``).
* Resuming: a run whose directory has ``metrics.json`` is reused, so an interrupted study continues
  where it stopped, and adding a seed trains only the new runs.

Writes ``OUT/study.json`` (per model and seed: test AUC, steady examples/second; timings),
``OUT/report/report.md`` (test days) and ``OUT/report_valid/report.md`` (validation days: the one to
make choices on).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import dropdown_rank  # noqa: F401  (sets the Keras/oneDNN environment before tensorflow loads)
from dropdown_rank._io import read_json, write_json
from dropdown_rank.build import BuildConfig, build
from dropdown_rank.evaluate.report import evaluate
from dropdown_rank.logs.synth import SCALES, write_world
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import TrainConfig, train_or_reuse

MODELS = [
    ModelConfig(kind="base", seq_len=20),
    ModelConfig(kind="base", seq_len=50),
    ModelConfig(kind="hgcn", seq_len=20),
    ModelConfig(kind="gat", seq_len=20),
    ModelConfig(kind="hgcn", seq_len=20, id_time_only=True),
    ModelConfig(kind="gat", seq_len=20, id_time_only=True),
]
POSITION_BIAS_MODELS = [
    ModelConfig(kind="base", seq_len=20, position_bias=True),
    ModelConfig(kind="hgcn", seq_len=20, position_bias=True),
]
RELATION_MODELS = [  # issue 20: candidate-history relations read off the q2q snapshot, with and without PAL
    ModelConfig(kind="hgcn", seq_len=20, relations=True),
    ModelConfig(kind="hgcn", seq_len=20, relations=True, position_bias=True),
    ModelConfig(kind="hgcn", seq_len=20, relations=True, two_hops=True),
    ModelConfig(kind="hgcn", seq_len=20, relations=True, session=True),
    ModelConfig(kind="hgcn", seq_len=20, id_time_only=True, relations=True),
]
FEATURE_ABLATIONS = [
    ModelConfig(kind="base", seq_len=20, features=()),
    ModelConfig(kind="hgcn", seq_len=20, features=()),
]
CATALOG = {config.name: config for config in MODELS + POSITION_BIAS_MODELS + RELATION_MODELS + FEATURE_ABLATIONS}


def run_dir(out: Path, config: ModelConfig, seed: int) -> Path:
    return out / "runs" / config.slug / f"seed{seed}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", help="log directory in the schema (default: generate the synthetic world)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--scale", choices=tuple(SCALES), default="default",
                        help="the synthetic world (default: default; static is the default world until 2026-12-04)")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed (synthesis); one world for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds: every model is trained once per seed")
    parser.add_argument("--no-position-bias", action="store_true", help="leave out base_20+pal and hgcn_20+pal")
    parser.add_argument("--models", nargs="+", choices=sorted(CATALOG), metavar="NAME",
                        help=f"train only these (default: the six, plus the PAL variants); known: {', '.join(CATALOG)}")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--valid-only", action="store_true", help="write only the validation-day report (choosing levers)")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: repeated seed in {args.seeds}")
    models = MODELS + ([] if args.no_position_bias else POSITION_BIAS_MODELS)
    if args.models:
        models = [CATALOG[name] for name in args.models]

    out = Path(args.out)
    # A resumed study keeps its build (its runs are bound to its fingerprint), so it must be the same world.
    world = {"logs": str(Path(args.logs).resolve()) if args.logs else None, "scale": None if args.logs else args.scale,
             "seed": None if args.logs else args.seed}
    marker = out / "study_world.json"
    if marker.exists() and read_json(marker) != world:
        parser.error(f"{out} holds a study of another world ({read_json(marker)}); use another --out")
    write_json(marker, world)
    timings = {}
    started = time.perf_counter()
    logs = Path(args.logs) if args.logs else out / "logs"
    if not args.logs:
        clock = time.perf_counter()
        write_world(logs, scale=args.scale, seed=args.seed)
        timings["synth"] = time.perf_counter() - clock
    clock = time.perf_counter()
    if not (out / "work" / "build.json").exists():
        build(logs, out / "work", BuildConfig())
    timings["build"] = time.perf_counter() - clock

    results, runs = {}, []
    for config in models:
        for seed in args.seeds:
            run = run_dir(out, config, seed)
            runs.append(run)
            clock = time.perf_counter()
            metrics = train_or_reuse(out / "work", run, config, TrainConfig(epochs=args.epochs, seed=seed))
            timings[f"train {config.name} seed {seed}"] = time.perf_counter() - clock
            results.setdefault(config.name, {})[seed] = metrics

    clock = time.perf_counter()
    if not args.valid_only:
        evaluate(out / "work", runs, out / "report", replicates=args.bootstrap, seed=args.seed)
    evaluate(out / "work", runs, out / "report_valid", replicates=args.bootstrap, seed=args.seed, split="valid")
    timings["evaluate"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    write_json(out / "study.json", {
        "logs": str(logs), "scale": None if args.logs else args.scale, "world_seed": args.seed, "training_seeds": args.seeds,
        "test_auc": {name: {str(s): m["test_auc"] for s, m in per.items()} for name, per in results.items()},
        "steady_examples_per_second": {name: {str(s): m.get("steady_examples_per_second") for s, m in per.items()} for name, per in results.items()},
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    })
    print(f"\nseed study (exact test AUC per training seed {args.seeds}, and their mean):")
    for name, per in results.items():
        aucs = [per[s]["test_auc"] for s in args.seeds]
        print(f"  {name:14s} " + " ".join(f"{a:.4f}" for a in aucs) + f"   mean {sum(aucs) / len(aucs):.4f}")
    print(f"report: {out / 'report' / 'report.md'}; total {timings['total'] / 60:.1f} min")


if __name__ == "__main__":
    main()
