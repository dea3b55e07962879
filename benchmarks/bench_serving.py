"""Serving latency and throughput through loaded SavedModels, beside DeepCTR's DIN.

    python benchmarks/bench_serving.py [--scale static] [--calls 500] [--rounds 5]

For base_20, hgcn_20 and gat_20 (the GNNs both live and with --precompute-context), each
exported and loaded with ``tf.saved_model.load``: latency p50/p99 of one dropdown request of 10
candidates (raw strings in, ``ctr`` out), and throughput in candidate rows/second at batch 1000.
Models are trained for one epoch first: speed does not depend on how well they rank.
DeepCTR's DIN (L=20, integer ids, no lookups) answers the same request shapes through a
``tf.function``, in the same process; install it with ``pip install -e '.[peer]'``.
"""
from __future__ import annotations

import time

import numpy as np
from common import CACHE, bench_parser, default_work, profile_ops, write_result

EXPORTS = {
    "base_20": ("base", False),
    "hgcn_20": ("hgcn", False),
    "hgcn_20 precomputed": ("hgcn", True),
    "gat_20": ("gat", False),
    "gat_20 precomputed": ("gat", True),
}
DIN_NAME = "DeepCTR DIN (tf.function, int ids)"


def timed_calls(fn, inputs: dict, calls: int, warmup: int = 30) -> np.ndarray:
    for _ in range(warmup):
        fn(**inputs)
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        out = fn(**inputs)
        next(iter(out.values())).numpy() if isinstance(out, dict) else out.numpy()
        times[i] = time.perf_counter() - start
    return times


def summarize(latency: np.ndarray, batch_seconds: np.ndarray, batch_rows: int) -> dict:
    return {"p50_ms": round(float(np.percentile(latency, 50)) * 1e3, 3), "p99_ms": round(float(np.percentile(latency, 99)) * 1e3, 3),
            "rows_per_second_at_batch_1000": round(batch_rows / float(np.median(batch_seconds)), 1)}


def requests(work):
    """A 10-candidate request and a 1000-row batch from the test split, as signature inputs."""
    import tensorflow as tf

    from dropdown_rank.dataset import make_dataset
    from dropdown_rank.export import SIGNATURE

    features, _ = next(iter(make_dataset(work.samples_dir, "test", 20, batch_size=1000)))
    batch = {k: features[k] for k in SIGNATURE}
    one = {k: v[:10] for k, v in batch.items()}
    return {k: tf.identity(v) for k, v in one.items()}, batch


def din_peer(work, one: dict, batch: dict):
    """DeepCTR's DIN with the same request shapes, as a ``tf.function`` and its integer inputs."""
    import tensorflow as tf
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat
    from deepctr.models import DIN

    sizes = {n: len(work.vocabulary(n)) + 2 for n in ("users", "queries")}
    columns = [SparseFeat("user", sizes["users"], 16), SparseFeat("candidate", sizes["queries"], 16),
               VarLenSparseFeat(SparseFeat("hist_candidate", sizes["queries"], 16, embedding_name="candidate"), maxlen=20,
                                length_name="seq_length")]
    model = DIN(columns, ["candidate"])
    signature = {"user": tf.TensorSpec([None], tf.int32), "candidate": tf.TensorSpec([None], tf.int32),
                 "hist_candidate": tf.TensorSpec([None, 20], tf.int32), "seq_length": tf.TensorSpec([None], tf.int32)}
    serve = tf.function(lambda user, candidate, hist_candidate, seq_length: model(
        {"user": user, "candidate": candidate, "hist_candidate": hist_candidate, "seq_length": seq_length}, training=False),
        input_signature=list(signature.values()))

    def as_ids(features):
        rows = int(features["user_id"].shape[0])
        rng = np.random.default_rng(0)
        return {"user": tf.constant(rng.integers(2, sizes["users"], rows), tf.int32),
                "candidate": tf.constant(rng.integers(2, sizes["queries"], rows), tf.int32),
                "hist_candidate": tf.constant(rng.integers(0, sizes["queries"], (rows, 20)), tf.int32),
                "seq_length": tf.fill([rows], 20)}

    return serve, as_ids(one), as_ids(batch)


def main(argv=None):
    parser = bench_parser(__doc__)
    parser.add_argument("--calls", type=int, default=500, help="10-candidate calls per model, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    import tensorflow as tf

    from dropdown_rank.workdir import Work
    from dropdown_rank.export import export
    from dropdown_rank.model import ModelConfig
    from dropdown_rank.train import TrainConfig, train_or_reuse

    work = Work.open(default_work(args.scale))
    root = CACHE / f"serving-{args.scale}-{work.fingerprint[:12]}"  # runs of another build are another cache
    one, batch = requests(work)
    servers = {}
    for name, (kind, precompute) in EXPORTS.items():
        run = root / "runs" / kind
        train_or_reuse(work.path, run, ModelConfig(kind=kind), TrainConfig(epochs=1), verbose=0)
        saved = root / "export" / name.replace(" ", "_")
        export(run, saved, precompute_context=precompute)
        servers[name] = (tf.saved_model.load(str(saved)).signatures["serving_default"], one, batch)
    results = {}
    try:
        servers[DIN_NAME] = din_peer(work, one, batch)
    except ImportError as error:
        results[DIN_NAME] = {"skipped": f"deepctr not installed ({error}); pip install -e '.[peer]'"}

    # The VM's speed drifts over minutes, so every model is timed in each round, and the ratios
    # compare models measured side by side rather than one after another.
    latency = {name: [] for name in servers}
    batch_seconds = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, (fn, one_inputs, batch_inputs) in servers.items():
            latency[name].append(timed_calls(fn, one_inputs, args.calls // args.rounds))
            batch_seconds[name].append(timed_calls(fn, batch_inputs, 6, warmup=1))
    for name, (fn, one_inputs, _) in servers.items():
        results[name] = summarize(np.concatenate(latency[name]), np.concatenate(batch_seconds[name]),
                                  int(batch["user_id"].shape[0]))
        if name != DIN_NAME:
            results[name]["op_profile_10_candidates"] = profile_ops(lambda: fn(**one_inputs)["ctr"].numpy(), 100)
        print(f"{name}: p50 {results[name]['p50_ms']} ms, p99 {results[name]['p99_ms']} ms, "
              f"{results[name]['rows_per_second_at_batch_1000']:,.0f} rows/s", flush=True)
    base = results["base_20"]["p50_ms"]
    for name, row in results.items():
        if "p50_ms" in row:
            row["p50_ratio_to_base_20"] = round(row["p50_ms"] / base, 3)
    write_result("serving", {"scale": args.scale, "request_candidates": 10, "calls": args.calls, "rounds": args.rounds,
                             "models": results}, args.out)


if __name__ == "__main__":
    main()
