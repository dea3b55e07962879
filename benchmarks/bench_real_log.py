"""Convert, build and training speed on a real query log (default: the AOL development extract).

    python benchmarks/bench_real_log.py [--src ../shared/data/aol-dev/user_search_logs.tar.gz] [--models base hgcn]
                                        [--batches 150] [--out results/aol_dev.json]

* **convert** (``dropdown-rank aol``) and **build** (``dropdown-rank build``, in-memory engine) run as their own
  processes: wall time and peak resident memory (``ru_maxrss`` of the child) are recorded, with the build's own
  stage timings from its ``stats.json``.
* **training**: each model (L=20) is fitted for ``--batches`` steps of 1024 rows on the built samples, in its
  own process; the steady rate is examples per second from the end of the first batch to the end of the last
  (tracing and the tf.data start-up excluded, as in ``bench_training.py``), beside the vocabulary sizes and the
  number of daily graph snapshots the GNN holds, which is what makes a real log slower than the synthetic world.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import HERE, timed, write_result

DEFAULT_SRC = HERE.parent.parent / "shared" / "data" / "aol-dev" / "user_search_logs.tar.gz"

TRAIN = r"""
import json, sys, time
import dropdown_rank
import tensorflow as tf
from dropdown_rank.workdir import Work
from dropdown_rank.dataset import SampleStream
from dropdown_rank.tables import RELATIONS
from dropdown_rank.model import CTRModel, ModelConfig, make_ranker
from dropdown_rank.train import TrainConfig, make_optimizer
from dropdown_rank.vocab import VOCABULARIES
work_dir, kind, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
tf.keras.utils.set_random_seed(0)
work = Work.open(work_dir)
config = ModelConfig(kind=kind)
tables = {r: work.daily_tables(r) for r in RELATIONS} if config.is_gnn else None
ranker = make_ranker(config, {n: work.vocabulary(n) for n in VOCABULARIES}, tables, {n: work.known_since(n) for n in VOCABULARIES})
model = CTRModel(ranker)
model.compile(optimizer=make_optimizer(TrainConfig()))
stream = SampleStream(work.samples_dir, "train", config.seq_len, 1024, shuffle=True)

class Clock(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()
        self.end = time.perf_counter()

clock = Clock()
model.fit(stream.dataset().take(batches), epochs=1, callbacks=[clock], verbose=0)
print(json.dumps({"steady_examples_per_second": (batches - 1) * 1024 / (clock.end - clock.start),
                  "snapshots": int(tables["q2q"].snapshot_ts.size) if tables else None}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="AOL per-user files, or the .tar.gz holding them")
    parser.add_argument("--models", nargs="+", default=["base", "hgcn"], choices=("base", "hgcn", "gat"))
    parser.add_argument("--batches", type=int, default=150, help="training steps per model (batch 1024)")
    parser.add_argument("--out", type=Path, help="JSON output (default: benchmarks/results/aol_dev.json)")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "dropdown_rank.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        logs, work = Path(tmp) / "logs", Path(tmp) / "work"
        convert = timed(cli + ["aol", "--src", str(args.src), "--out", str(logs)])
        build = timed(cli + ["build", "--logs", str(logs), "--out", str(work)])
        stats = json.loads((work / "stats.json").read_text())
        training = {}
        for kind in args.models:
            run = timed([sys.executable, "-c", TRAIN, str(work), kind, str(args.batches)])
            training[f"{kind}_20"] = {**json.loads(run["stdout"].strip().splitlines()[-1]), "process_seconds": run["seconds"],
                                      "peak_memory_mb": run["peak_memory_mb"]}
            print(f"{kind}_20: {training[f'{kind}_20']['steady_examples_per_second']:,.0f} examples/s")
    write_result("aol_dev", {
        "src": str(args.src),
        "convert": {k: v for k, v in convert.items() if k != "stdout"},
        "build": {"seconds": build["seconds"], "peak_memory_mb": build["peak_memory_mb"], "stage_seconds": stats["timings"],
                  "samples": stats["samples"], "vocab": stats["vocab"], "events": stats["events"]},
        "training": {"batches": args.batches, "batch_size": 1024, **training},
    }, args.out)


if __name__ == "__main__":
    main()
