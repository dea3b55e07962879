"""Does training survive with oneDNN's CPU ops on? Fresh processes, several runs per model.

    python benchmarks/check_onednn.py [--scale default] [--runs 4] [--steps 60]

With TF_ENABLE_ONEDNN_OPTS=1, training spektral's GATConv segfaulted in most runs, which is why
that layer refuses to build under oneDNN. oneDNN is on by default (turning it off costs training
speed, see bench_training's onednn_off_vs_on), so this records, per model, how many of ``--runs``
fresh training processes with oneDNN **on** exit cleanly. spektral GATConv is the positive control; it is
built past dropdown_rank's refusal (see ``TRAIN``) so the crash the refusal prevents is still measured.
"""
from __future__ import annotations

import os
import subprocess
import sys

from common import bench_parser, default_work, write_result

TRAIN = r"""
import os
import sys
import dropdown_rank
import tensorflow as tf
if sys.argv[6] == "unguarded":
    # TensorFlow fixed oneDNN on at import; flipping the variable now only gets past
    # dropdown_rank's refusal to build GATConv under oneDNN, so the crash itself is measured.
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
from dropdown_rank.workdir import Work
from dropdown_rank.dataset import make_dataset
from dropdown_rank.model import CTRModel, ModelConfig, make_ranker
from dropdown_rank.train import TrainConfig, make_optimizer
work = Work.open(sys.argv[1])
config = ModelConfig(kind=sys.argv[2], graph_impl=sys.argv[3])
vocab = {n: work.vocabulary(n) for n in ("users", "queries", "items")}
tables = {r: work.neighbor_table(r) for r in ("q2q", "i2i")} if config.is_gnn else None
model = CTRModel(make_ranker(config, vocab, tables))
model.compile(optimizer=make_optimizer(TrainConfig()))
model.fit(make_dataset(work.samples_dir, "train", 20, 1024, shuffle=True, seed=int(sys.argv[5])).take(int(sys.argv[4])), verbose=0)
print("finished")
"""

MODELS = {"base_20": ("base", "fused", "guarded"), "hgcn_20": ("hgcn", "fused", "guarded"),
          "gat_20": ("gat", "fused", "guarded"),
          "gat_20 (spektral GATConv)": ("gat", "spektral", "unguarded")}


def main(argv=None):
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    work = default_work(args.scale)
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1")
    results = {}
    for name, (kind, impl, guard) in MODELS.items():
        codes = []
        for run in range(args.runs):
            done = subprocess.run([sys.executable, "-c", TRAIN, str(work), kind, impl, str(args.steps), str(run), guard],
                                  capture_output=True, text=True, env=env)
            codes.append(done.returncode if "finished" in done.stdout else (done.returncode or "no output"))
        results[name] = {"clean_runs": sum(c == 0 for c in codes), "runs": args.runs, "exit_codes": codes}
        print(f"{name}: {results[name]}", flush=True)
    write_result("onednn_on_crash_check", {"scale": args.scale, "steps": args.steps, "TF_ENABLE_ONEDNN_OPTS": "1",
                                           "models": results}, args.out)


if __name__ == "__main__":
    main()
