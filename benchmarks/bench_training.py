"""Training throughput of base_20, base_50, hgcn_20, gat_20 (and the spektral forms) on the same data.

    python benchmarks/bench_training.py [--scale static] [--steps 160] [--rounds 2]

Every model trains through Keras ``fit`` on the same shuffled training stream, batch 1024, for
``--steps`` steps; the rate is measured from the end of step 10 to the last step (steady state,
not whole-call time). Models run interleaved for ``--rounds`` rounds in one process, and each
GNN's cost is reported as its ratio to base_20 within the same round (median over rounds).
Also measured: what switching oneDNN's CPU ops off costs (base_20 and hgcn_20, in fresh
processes with TF_ENABLE_ONEDNN_OPTS=0 and =1), and an op-level profile (TF profiler,
framework op stats) of one train step per model, naming where the time goes.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from common import bench_parser, default_work, profile_ops, run_python, write_result

MODELS = {
    "base_20": dict(kind="base", seq_len=20),
    "base_50": dict(kind="base", seq_len=50),
    "hgcn_20": dict(kind="hgcn", seq_len=20),
    "gat_20": dict(kind="gat", seq_len=20),
    "hgcn_20 (spektral GCNConv)": dict(kind="hgcn", seq_len=20, graph_impl="spektral"),
    "gat_20 (spektral GATConv)": dict(kind="gat", seq_len=20, graph_impl="spektral"),
}


def compiled_model(work, spec: dict):
    from dropdown_rank.model import CTRModel, ModelConfig, make_ranker
    from dropdown_rank.train import TrainConfig, make_optimizer

    config = ModelConfig(**spec)
    vocabularies = {n: work.vocabulary(n) for n in ("users", "queries", "items")}
    tables = {r: work.neighbor_table(r) for r in ("q2q", "i2i")} if config.is_gnn else None
    model = CTRModel(make_ranker(config, vocabularies, tables))
    model.compile(optimizer=make_optimizer(TrainConfig()))
    return model, config


def steady_rate(work, spec: dict, steps: int, batch_size: int = 1024, seed: int = 0) -> float:
    import tensorflow as tf

    from dropdown_rank.dataset import make_dataset

    model, config = compiled_model(work, spec)
    marks = {}

    class Clock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 9:
                marks["start"] = time.perf_counter()
            marks["end"] = time.perf_counter()

    data = make_dataset(work.samples_dir, "train", config.seq_len, batch_size, shuffle=True, seed=seed).repeat().take(steps)
    model.fit(data, epochs=1, verbose=0, callbacks=[Clock()])
    return (steps - 10) * batch_size / (marks["end"] - marks["start"])


ONEDNN = r"""
import json, sys
import dropdown_rank
sys.path.insert(0, sys.argv[3])
from bench_training import steady_rate
from dropdown_rank.workdir import Work
work = Work.open(sys.argv[1])
steps = int(sys.argv[2])
print(json.dumps({name: steady_rate(work, spec, steps) for name, spec in
                  [("base_20", dict(kind="base")), ("hgcn_20", dict(kind="hgcn"))]}))
"""


def op_profile(work, spec: dict, steps: int = 12) -> dict:
    """Where a train step's time goes (TF profiler, framework op stats), per step."""
    import tensorflow as tf

    from dropdown_rank.dataset import make_dataset

    model, config = compiled_model(work, spec)
    step = tf.function(model.train_step)
    batches = iter(make_dataset(work.samples_dir, "train", config.seq_len, 1024, shuffle=True).repeat())
    for _ in range(4):
        step(next(batches))
    return profile_ops(lambda: step(next(batches))["loss"].numpy(), steps)


def main(argv=None):
    parser = bench_parser(__doc__)
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    from dropdown_rank.workdir import Work

    work = Work.open(default_work(args.scale))
    # spektral's GATConv refuses to build under oneDNN (TensorFlow's default); it is measured only with oneDNN off.
    from dropdown_rank._env import onednn_enabled

    skipped = [name for name, spec in MODELS.items() if onednn_enabled() and spec["kind"] == "gat" and spec.get("graph_impl") == "spektral"]
    models = {name: spec for name, spec in MODELS.items() if name not in skipped}
    rates = {name: [] for name in models}
    for round_ in range(args.rounds):
        for name, spec in models.items():
            rates[name].append(steady_rate(work, spec, args.steps, seed=round_))
            print(f"round {round_ + 1}: {name}: {rates[name][-1]:,.0f} examples/s", flush=True)
    ratios = {name: float(np.median([r / b for r, b in zip(rates[name], rates["base_20"])])) for name in models}

    onednn = {}
    for value in ("0", "1"):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=value)
        done = run_python(ONEDNN, work.path, args.steps, Path(__file__).parent, env=env)
        onednn[value] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr[-2000:]}
        print(f"TF_ENABLE_ONEDNN_OPTS={value}: {onednn[value]}", flush=True)

    profiles = {name: op_profile(work, MODELS[name]) for name in ("base_20", "hgcn_20", "gat_20")}
    write_result("training", {
        "scale": args.scale, "batch_size": 1024, "steps_per_measurement": args.steps, "rounds": args.rounds,
        "examples_per_second": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "median_examples_per_second": {k: round(float(np.median(v)), 1) for k, v in rates.items()},
        "ratio_to_base_20_same_round_median": {k: round(v, 3) for k, v in ratios.items()},
        "onednn_off_vs_on": onednn,
        "skipped_under_onednn": skipped,
        "op_profiles": profiles,
    }, args.out)


if __name__ == "__main__":
    main()
