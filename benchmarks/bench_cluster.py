"""Training on a cluster of local processes: one process against MultiWorkerMirroredStrategy with 1 and 2
workers and ParameterServerStrategy, on the same samples.

    python benchmarks/bench_cluster.py [--scale static] [--models base hgcn] [--epochs 1]

Every task is a ``dropdown-rank train`` process on loopback ports (``TF_CONFIG`` as in the README,
"Training on a cluster"); a parameter-server job's worker and ps tasks are killed when the chief
ends. Each configuration trains ``--epochs`` epochs, batch 1024 (global), seed 0; the rate is the
chief's steady examples/s (``metrics.json``: global examples from the end of the first step to the
end of the epoch), next to the whole-call wall time and the exact test AUC. On 2 cores no speedup is
expected: the workers share them. The point is that the cluster paths run and what they cost.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bench_parser, default_work, write_result

from dropdown_rank.cluster import loopback_cluster

CONFIGURATIONS = {
    "one process": {},
    "multi-worker, 1 worker": {"worker": 1},
    "multi-worker, 2 workers": {"worker": 2},
    "parameter-server, 1 worker, 2 ps": {"chief": 1, "worker": 1, "ps": 2},
}


def run_configuration(work: Path, out: Path, model: str, epochs: int, jobs: dict) -> dict:
    command = [sys.executable, "-m", "dropdown_rank.cli", "train", "--data", str(work), "--out", str(out), "--model", model,
               "--epochs", str(epochs), "--batch-size", "1024", "--seed", "0"]
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    if not jobs:
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return {"wall_seconds": time.perf_counter() - started, **json.loads((out / "metrics.json").read_text())}
    cluster = loopback_cluster(jobs)
    strategy = ["--strategy", "parameter-server"] if "ps" in jobs else []
    tasks = [(job, index) for job, count in jobs.items() for index in range(count)]
    chief = ("chief", 0) if "chief" in jobs else ("worker", 0)
    logs = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    started = time.perf_counter()
    stderr = {task: open(logs / f"{task[0]}{task[1]}.log", "w") for task in tasks}
    processes = {task: subprocess.Popen(command + strategy, env={**env, "TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": task[0], "index": task[1]}})}, stdout=subprocess.DEVNULL, stderr=stderr[task])
        for task in tasks}
    try:
        finished = [task for task in tasks if task[0] == "worker" or task == chief] if "ps" not in jobs else [chief]
        for task in finished:
            if processes[task].wait() != 0:
                raise RuntimeError(f"{task} failed: {(logs / f'{task[0]}{task[1]}.log').read_text()[-3000:]}")
        wall = time.perf_counter() - started
    finally:
        for task, process in processes.items():
            if process.poll() is None:  # a parameter-server job's worker and ps tasks serve until killed
                process.kill()
                process.wait()
            stderr[task].close()
    return {"wall_seconds": wall, **json.loads((out / "metrics.json").read_text())}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["base", "hgcn"])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    work = default_work(args.scale)
    results = []
    with tempfile.TemporaryDirectory() as root:
        for model in args.models:
            for name, jobs in CONFIGURATIONS.items():
                metrics = run_configuration(work, Path(root) / f"{model}-{len(results)}", model, args.epochs, jobs)
                row = {"model": metrics["model"], "configuration": name, "cluster": jobs,
                       "steady_examples_per_second": metrics["steady_examples_per_second"],
                       "wall_seconds": round(metrics["wall_seconds"], 1), "test_auc": metrics["test_auc"],
                       "train_examples": metrics["train_examples"]}
                results.append(row)
                print(json.dumps(row))
    for row in results:
        single = next(r for r in results if r["model"] == row["model"] and r["configuration"] == "one process")
        row["rate_vs_one_process"] = round(row["steady_examples_per_second"] / single["steady_examples_per_second"], 3)
    write_result("cluster", {"scale": args.scale, "epochs": args.epochs, "batch_size": 1024, "results": results}, args.out)


if __name__ == "__main__":
    main()
