"""Training step rate against vocabulary size: does a step's cost follow the batch or the vocabulary?

Steady training examples/s of base_20 and hgcn_20 with query and item vocabularies of 5e4, 5e5 and
5e6 (users fixed at 1e5), built with the public API (``make_ranker`` + ``CTRModel`` compiled with
``train.make_optimizer``): batch 1024, L=20, request features on, ids drawn from a Zipf law
(exponent 1.1) over the vocabulary, K=10 neighbor tables whose neighbors follow the same law
(co-occurrence neighbors are popular nodes; uniform random neighbors would make the rows a batch
touches grow with the vocabulary). No input pipeline: 8 batches held in memory and cycled. Every
(vocabulary, model, optimizer) runs in a fresh subprocess of the same benchmark run, which gives
its peak memory (ru_maxrss) and keeps the ratios comparable. The distinct query ids and q2q
neighbor rows of a batch are reported beside the rate: they, not the vocabulary, set a lazy step's cost.

    .venv/bin/python benchmarks/bench_vocab.py                     # 5e4 5e5 5e6, both models and optimizers
    .venv/bin/python benchmarks/bench_vocab.py --sizes 50000 --steps 30 --optimizers lazy_adam
"""
from __future__ import annotations

import json
import sys

from common import bench_parser, run_python, write_result

CHILD = r"""
import json, resource, sys, time
import dropdown_rank
import numpy as np
import tensorflow as tf
from dropdown_rank.tables import NeighborTable
from dropdown_rank.model import CTRModel, ModelConfig, example_features, make_ranker
from dropdown_rank.train import TrainConfig, make_optimizer

size, kind, optimizer, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
USERS, BATCH, L, K, POOL = 100_000, 1024, 20, 10, 8
rng = np.random.default_rng(0)
vocab = {"users": [f"u{i}" for i in range(USERS)], "queries": [f"q{i}" for i in range(size)], "items": [f"i{i}" for i in range(size)]}

ZIPF = {}

def zipf(n, shape):
    # P(rank r) proportional to (r + 1) ** -1.1 over the vocabulary: truncated, not capped onto the last id
    if n not in ZIPF:
        weights = np.arange(1, n + 1, dtype=np.float64) ** -1.1
        ZIPF[n] = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(ZIPF[n], rng.random(shape)), n - 1)

def table(prefix):
    nodes = ["", *(f"{prefix}{i}" for i in range(size))]
    ids = (zipf(size, (size + 1, K)) + 1).astype(np.int32)  # neighbors are popular nodes, as co-occurrence makes them
    ids[0] = 0
    return NeighborTable(relation=prefix, nodes=np.array(nodes, object), ids=ids, weight=np.full(ids.shape, 1.0 / K, np.float32),
                         last_ts=np.zeros(ids.shape, np.int64), count=np.ones(ids.shape, np.int64), snapshot_ts=86400 * 30)

tables = {"q2q": table("q"), "i2i": table("i")} if kind != "base" else None
t0 = time.perf_counter()
ranker = make_ranker(ModelConfig(kind=kind), vocab, tables)
setup = time.perf_counter() - t0
model = CTRModel(ranker)
model.compile(optimizer=make_optimizer(TrainConfig(optimizer=optimizer)))
step = tf.function(model.train_step)
names = lambda p, ids: np.char.add(p, ids.astype(str)).astype(object)
batches = []
for _ in range(POOL):
    f = example_features(BATCH, L)
    f.update(user_id=names("u", zipf(USERS, BATCH)), candidate=names("q", zipf(size, BATCH)),
             query_history=names("q", zipf(size, (BATCH, L))), item_history=names("i", zipf(size, (BATCH, L))),
             query_history_ts=np.full((BATCH, L), 86400 * 40, np.int64), item_history_ts=np.full((BATCH, L), 86400 * 40, np.int64),
             request_ts=np.full(BATCH, 86400 * 41, np.int64))
    batches.append(({k: tf.constant(v) for k, v in f.items()}, tf.constant(rng.random(BATCH) < 0.1, tf.float32)))
first = batches[0][0]
queries = np.unique(np.concatenate([[b.decode()[1:] for b in first["candidate"].numpy()],
                                    [b.decode()[1:] for b in first["query_history"].numpy().ravel()]]).astype(np.int64)) + 1
touched = {"distinct_queries_per_batch": int(len(queries))}
if tables is not None:
    touched["distinct_query_neighbor_rows_per_batch"] = int(len(np.unique(tables["q2q"].ids[queries])))
for i in range(5):  # trace and warm up
    step(batches[i % POOL])["loss"].numpy()
start = time.perf_counter()
for i in range(steps):
    loss = step(batches[i % POOL])["loss"]
loss.numpy()
seconds = time.perf_counter() - start
print(json.dumps({"examples_per_second": steps * BATCH / seconds, "ms_per_step": 1000 * seconds / steps,
                  "model_setup_seconds": setup, **touched, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv=None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000, 5_000_000])
    parser.add_argument("--models", nargs="+", default=["base", "hgcn"])
    parser.add_argument("--optimizers", nargs="+", default=["lazy_adam", "adam"])
    parser.add_argument("--steps", type=int, default=40, help="timed steps after 5 warm-up steps")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        for kind in args.models:
            for optimizer in args.optimizers:
                done = run_python(CHILD, size, kind, optimizer, args.steps)
                if done.returncode:
                    sys.exit(f"vocabulary {size} {kind} {optimizer} failed:\n{done.stderr[-3000:]}")
                row = {"vocabulary": size, "model": f"{kind}_20", "optimizer": optimizer,
                       **json.loads(done.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for row in rows:
        smallest = next(r for r in rows if r["model"] == row["model"] and r["optimizer"] == row["optimizer"]
                        and r["vocabulary"] == min(args.sizes))
        summary[f"{row['model']} {row['optimizer']} {row['vocabulary']:.0e}"] = round(
            row["examples_per_second"] / smallest["examples_per_second"], 3)
    write_result("vocab", {"batch_size": 1024, "seq_len": 20, "steps": args.steps, "rows": rows,
                           "rate_vs_smallest_vocabulary": summary}, args.out)


if __name__ == "__main__":
    main()
