"""Daily incremental training against the multi-epoch shuffled training, on one build, several seeds.

    python experiments/daily_training.py --work WORK --out OUT [--models base_20 hgcn_20] [--seeds 0 1 2]

For each model and training seed, on the same work directory:

* ``epochs``: ``train`` (up to 4 shuffled epochs over every training day, early stopping on the
  exact validation AUC, the best epoch kept), in ``OUT/epochs/<model>/seed<k>``;
* ``daily``: ``train_daily`` (one pass per training day, in time order, from scratch; the last
  day's model kept, no choice on validation), in ``OUT/daily/<model>/seed<k>``; the validation
  AUC after each day is in its ``daily.json``.

Both are calibrated on the validation days and scored on the same test days. A run whose
directory has ``metrics.json`` is reused. Writes ``OUT/daily_training.json``: per run the
validation AUC of the model kept, the test AUC and logloss, the wall-clock seconds of the call
(training, per-epoch or per-day validation, calibration and prediction) and per day of training
data, and for daily runs the seconds of the day's ``fit`` passes alone; per model the mean and the
per-seed difference daily − epochs (``OUT/daily_training.md`` as tables). ``OUT/daily_val_auc.png`` plots the validation AUC after each
day against the epochs runs' kept validation AUC.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

import numpy as np

import dropdown_rank  # noqa: F401  (sets the Keras/oneDNN environment before tensorflow loads)
import tensorflow as tf
from dropdown_rank._io import read_json, write_json
from dropdown_rank.daily import LOG, train_daily, training_days
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import TrainConfig, train_or_reuse
from dropdown_rank.workdir import Work

MODELS = {"base_20": ModelConfig(kind="base", seq_len=20), "hgcn_20": ModelConfig(kind="hgcn", seq_len=20)}
MODES = ("epochs", "daily")


def run_once(mode: str, work: Path, run_dir: Path, config: ModelConfig, seed: int) -> dict:
    """The run's metrics and the wall-clock seconds of the call that trained it (None when reused)."""
    if (run_dir / "metrics.json").exists():
        return {"metrics": read_json(run_dir / "metrics.json"), "wall_seconds": read_json(run_dir / "wall.json")["seconds"]}
    tf.keras.backend.clear_session()  # each run in a fresh Keras state, as its own process would be
    started = time.perf_counter()
    if mode == "epochs":
        metrics = train_or_reuse(work, run_dir, config, TrainConfig(seed=seed), verbose=2)
    else:
        metrics = train_daily(work, run_dir, config, TrainConfig(seed=seed), verbose=2)
    seconds = round(time.perf_counter() - started, 1)
    write_json(run_dir / "wall.json", {"seconds": seconds})
    return {"metrics": metrics, "wall_seconds": seconds}


def kept_val_auc(mode: str, run_dir: Path, metrics: dict) -> float:
    if mode == "epochs":
        return max(metrics["val_auc_per_epoch"])
    return read_json(run_dir / LOG)["days"][-1]["val_auc"]


def summarize(runs: dict, days: int) -> dict:
    models = {}
    for name, by_mode in runs.items():
        seeds = sorted(set(by_mode["epochs"]) & set(by_mode["daily"]))
        summary = {}
        for mode in MODES:
            rows = [by_mode[mode][s] for s in seeds]
            summary[mode] = {key: float(np.mean([r[key] for r in rows]))
                             for key in ("val_auc", "test_auc", "test_logloss", "wall_seconds", "steady_examples_per_second")}
            summary[mode]["wall_seconds_per_day_of_data"] = summary[mode]["wall_seconds"] / days
        summary["daily"]["fit_seconds_per_day"] = float(np.mean([by_mode["daily"][s]["fit_seconds_per_day"] for s in seeds]))
        summary["daily_minus_epochs"] = {key: [by_mode["daily"][s][key] - by_mode["epochs"][s][key] for s in seeds]
                                         for key in ("val_auc", "test_auc")}
        summary["seeds"] = seeds
        models[name] = summary
    return models


def markdown(models: dict, days: int) -> str:
    """The comparison table (means over the seeds both modes ran) and the per-seed differences."""
    lines = [f"Training days: {days}. Means over seeds; Δ = daily - epochs per seed.", "",
             "| model | mode | val AUC | test AUC | test logloss | wall s (whole call) | wall s per day of data | fit s per day | "
             "steady examples/s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, summary in models.items():
        for mode in MODES:
            row = summary[mode]
            fit = f"{row['fit_seconds_per_day']:.1f}" if "fit_seconds_per_day" in row else ""
            lines.append(f"| {name} | {mode} | {row['val_auc']:.4f} | {row['test_auc']:.4f} | {row['test_logloss']:.4f} | "
                         f"{row['wall_seconds']:.0f} | {row['wall_seconds_per_day_of_data']:.1f} | {fit} | "
                         f"{row['steady_examples_per_second']:,.0f} |")
    lines += ["", "| model | seeds | Δ val AUC per seed | Δ test AUC per seed |", "| --- | --- | --- | --- |"]
    for name, summary in models.items():
        delta = summary["daily_minus_epochs"]
        lines.append(f"| {name} | {', '.join(map(str, summary['seeds']))} | "
                     f"{', '.join(f'{d:+.4f}' for d in delta['val_auc'])} | {', '.join(f'{d:+.4f}' for d in delta['test_auc'])} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for color, (name, by_mode) in zip(("tab:blue", "tab:orange", "tab:green"), runs.items()):
        for seed, row in sorted(by_mode["daily"].items()):
            ax.plot(range(1, len(row["val_auc_per_day"]) + 1), row["val_auc_per_day"], color=color, alpha=0.7, label=f"{name} daily" if seed == min(by_mode["daily"]) else None)
        for seed, row in sorted(by_mode["epochs"].items()):
            ax.axhline(row["val_auc"], color=color, linestyle="--", alpha=0.7,
                       label=f"{name} epochs (kept epoch)" if seed == min(by_mode["epochs"]) else None)
    ax.set_xlabel("training days trained (one pass each)")
    ax.set_ylabel("validation AUC (exact)")
    ax.set_title("Daily incremental training vs multi-epoch training, per seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "daily_val_auc.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    work = Work.open(args.work)
    days = sum(1 for _ in training_days(work))
    runs = {}
    for name in args.models:
        runs[name] = {mode: {} for mode in MODES}
        for seed in args.seeds:
            for mode in MODES:
                run_dir = args.out / mode / name / f"seed{seed}"
                result = run_once(mode, args.work, run_dir, MODELS[name], seed)
                metrics = result["metrics"]
                row = {"run": str(run_dir), "val_auc": kept_val_auc(mode, run_dir, metrics), "test_auc": metrics["test_auc"],
                       "test_logloss": metrics["test_logloss"], "wall_seconds": result["wall_seconds"],
                       "wall_seconds_per_day_of_data": result["wall_seconds"] / days,
                       "steady_examples_per_second": metrics["steady_examples_per_second"]}
                if mode == "daily":
                    row.update(fit_seconds_per_day=metrics["fit_seconds_per_day"], val_auc_per_day=metrics["val_auc_per_day"])
                else:
                    row.update(epochs_run=metrics["epochs_run"], best_epoch=metrics["best_epoch"])
                runs[name][mode][seed] = row
                print(f"{name} seed {seed} {mode}: val AUC {row['val_auc']:.4f}, test AUC {row['test_auc']:.4f}, "
                      f"{row['wall_seconds']:.0f} s", flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    write_json(args.out / "daily_training.json", {"date": datetime.date.today().isoformat(),
                                                   "machine": {"cores": os.cpu_count(), "cpu": cpu, "tensorflow": tf.__version__},
                                                   "work": str(args.work.resolve()), "work_fingerprint": work.fingerprint,
                                                   "training_days": days, "runs": runs, "models": summarize(runs, days)})
    models = read_json(args.out / "daily_training.json")["models"]
    (args.out / "daily_training.md").write_text(markdown(models, days))
    print(markdown(models, days))
    plot(runs, args.out)


if __name__ == "__main__":
    main()
