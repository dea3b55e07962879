"""The input pipeline alone, on 1 and 2 cores, against hgcn_20's training rate in the same run.

    python benchmarks/bench_input.py [--scale static] [--batches 400] [--repeats 3]

Each measurement runs in a fresh process pinned to its cores (``sched_setaffinity`` before
TensorFlow starts, so tf.data's thread pools are sized for them):

* **input**: ``make_dataset(train, L=20, batch 1024, shuffle=True)`` iterated with nothing else to
  do; the rate counts ``--batches`` batches after the first 30 (file open, first shuffle window).
* **hgcn_20 training**: Keras ``fit`` on the same stream on 2 cores, steady rate from the end of step
  10 (``bench_training.steady_rate``), under TensorFlow's default oneDNN setting.

Input and training measurements alternate for ``--repeats`` rounds; the JSON keeps every round and
the medians. Targets (issue 12): the input pipeline on 2 cores delivers at least 3x hgcn_20's
training rate, and its rate grows from 1 to 2 cores.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from common import bench_parser, default_work, run_python, write_result

INPUT = r"""
import json, os, sys, time
os.sched_setaffinity(0, set(range(int(sys.argv[2]))))
import dropdown_rank
from dropdown_rank.dataset import make_dataset
batches, warmup = int(sys.argv[3]), 30
data = iter(make_dataset(sys.argv[1] + "/samples", "train", 20, 1024, shuffle=True, seed=0).repeat())
for _ in range(warmup):
    next(data)
rows, started = 0, time.perf_counter()
for _ in range(batches):
    rows += int(next(data)[1].shape[0])
print(json.dumps({"rows_per_second": rows / (time.perf_counter() - started), "cores": len(os.sched_getaffinity(0))}))
"""

TRAINING = r"""
import json, os, sys
os.sched_setaffinity(0, set(range(int(sys.argv[2]))))
sys.path.insert(0, sys.argv[4])
import dropdown_rank
from dropdown_rank.workdir import Work
from bench_training import MODELS, steady_rate
rate = steady_rate(Work.open(sys.argv[1]), MODELS["hgcn_20"], int(sys.argv[3]))
print(json.dumps({"examples_per_second": rate, "cores": len(os.sched_getaffinity(0))}))
"""


def measure(code: str, *args) -> dict:
    done = run_python(code, *args)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = bench_parser(__doc__)
    parser.add_argument("--batches", type=int, default=400, help="input batches timed per measurement (default 400)")
    parser.add_argument("--train-steps", type=int, default=160, help="hgcn_20 training steps per measurement (default 160)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    work = default_work(args.scale)
    rounds = []
    for round_index in range(args.repeats):
        result = {f"input_{cores}_core": measure(INPUT, work, cores, args.batches)["rows_per_second"] for cores in (1, 2)}
        result["hgcn_20_training_2_core"] = measure(TRAINING, work, 2, args.train_steps, Path(__file__).parent)["examples_per_second"]
        rounds.append({k: round(v, 1) for k, v in result.items()})
        print(f"round {round_index + 1}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rounds[-1].items()), flush=True)
    median = {k: round(statistics.median(r[k] for r in rounds), 1) for k in rounds[0]}
    targets = {
        "input_2_core_over_hgcn_20": round(median["input_2_core"] / median["hgcn_20_training_2_core"], 2),
        "input_2_core_over_1_core": round(median["input_2_core"] / median["input_1_core"], 2),
    }
    targets["input_at_least_3x_hgcn_20"] = targets["input_2_core_over_hgcn_20"] >= 3.0
    targets["input_grows_with_cores"] = targets["input_2_core_over_1_core"] > 1.0
    print(json.dumps(targets))
    write_result("input", {"scale": args.scale, "batch_size": 1024, "seq_len": 20, "rounds": rounds, "median": median,
                           "targets": targets}, args.out)


if __name__ == "__main__":
    main()
