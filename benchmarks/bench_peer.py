"""DeepCTR's DIN beside our rankers on the same samples: training examples/second and test AUC.

    pip install -e '.[peer]'
    python benchmarks/bench_peer.py [--scale static] [--epochs 4]

DIN gets the same training/validation/test samples as integer ids (our training-period
vocabularies; 0 = padding, 1 = OOV): user, candidate query, the query history (attended by the
candidate, DIN's target attention) and the item history (mean-pooled: DeepCTR's DIN attends only
histories of the target's own feature). It trains from NumPy arrays with Keras ``fit`` (DeepCTR's
usual path), batch 1024, Adam 1e-3 (ours: ``make_optimizer``'s default, LazyAdam 1e-3), keeping the
epoch with the best exact validation AUC, as our ``train`` does. Ours train in the same run through ``dropdown_rank.train``. Rates are steady rates
(from the end of batch 10, or a third of a tiny epoch, to the end of the epoch).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from common import CACHE, bench_parser, default_work, write_result


def id_matrix(lists: pd.Series, vocabulary: list, length: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.minimum(lists.map(len).to_numpy(), length)
    flat = np.concatenate([np.asarray(v[:length], dtype=object) for v in lists]) if len(lists) else np.zeros(0, object)
    ids = pd.Index(vocabulary).get_indexer(flat)
    ids = np.where(ids >= 0, ids + 2, 1)
    out = np.zeros((len(lists), length), dtype=np.int32)
    rows = np.repeat(np.arange(len(lists)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = ids
    return out, lengths.astype(np.int32)


def din_inputs(work, split: str, length: int, vocab: dict) -> tuple[dict, np.ndarray]:
    from dropdown_rank.workdir import read_samples

    frame = read_samples(work.samples_dir, split, columns=["user_id", "candidate", "query_history", "item_history", "label"])
    lookup = lambda values, name: np.where((i := pd.Index(vocab[name]).get_indexer(values)) >= 0, i + 2, 1).astype(np.int32)
    hist, hist_len = id_matrix(frame["query_history"], vocab["queries"], length)
    items, items_len = id_matrix(frame["item_history"], vocab["items"], length)
    return ({"user": lookup(frame["user_id"], "users"), "candidate": lookup(frame["candidate"], "queries"),
             "hist_candidate": hist, "seq_length": hist_len, "item_history": items, "item_length": items_len},
            frame["label"].to_numpy(np.float32))


def train_din(work, length: int, epochs: int, seed: int) -> dict:
    import tensorflow as tf
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat
    from deepctr.models import DIN
    from sklearn.metrics import roc_auc_score

    tf.keras.utils.set_random_seed(seed)
    vocab = {n: work.vocabulary(n) for n in ("users", "queries", "items")}
    data = {split: din_inputs(work, split, length, vocab) for split in ("train", "valid", "test")}
    columns = [
        SparseFeat("user", len(vocab["users"]) + 2, 16),
        SparseFeat("candidate", len(vocab["queries"]) + 2, 16),
        VarLenSparseFeat(SparseFeat("hist_candidate", len(vocab["queries"]) + 2, 16, embedding_name="candidate"), maxlen=length,
                         length_name="seq_length"),
        VarLenSparseFeat(SparseFeat("item_history", len(vocab["items"]) + 2, 16), maxlen=length, combiner="mean",
                         length_name="item_length"),
    ]
    model = DIN(columns, ["candidate"], seed=seed)
    model.compile(tf.keras.optimizers.legacy.Adam(1e-3), "binary_crossentropy")
    marks, rates = {}, []
    warm = min(9, len(data["train"][1]) // 1024 // 3)  # tiny worlds have few batches per epoch

    class Clock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == warm:
                marks["start"] = time.perf_counter()
            marks["end"], marks["last"] = time.perf_counter(), batch

    best = (-1.0, None, 0)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.fit(*data["train"], batch_size=1024, epochs=1, verbose=0, shuffle=True, callbacks=[Clock()])
        rates.append((marks["last"] - warm) * 1024 / (marks["end"] - marks["start"]))
        val_auc = roc_auc_score(data["valid"][1], model.predict(data["valid"][0], batch_size=4096, verbose=0).ravel())
        print(f"DIN_{length} epoch {epoch + 1}: val AUC {val_auc:.4f}, {rates[-1]:,.0f} examples/s", flush=True)
        if val_auc > best[0]:
            best = (val_auc, model.get_weights(), epoch + 1)
        elif epoch + 1 - best[2] >= 1:
            break
    model.set_weights(best[1])
    test_auc = roc_auc_score(data["test"][1], model.predict(data["test"][0], batch_size=4096, verbose=0).ravel())
    return {"test_auc": round(float(test_auc), 4), "best_epoch": best[2], "steady_examples_per_second": round(float(np.median(rates)), 1),
            "train_seconds_whole_call": round(time.perf_counter() - started, 1)}


def main(argv=None):
    parser = bench_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from dropdown_rank.workdir import Work
    from dropdown_rank.model import ModelConfig
    from dropdown_rank.train import TrainConfig, train

    work = Work.open(default_work(args.scale))
    results = {}
    for length in (20, 50):
        results[f"DeepCTR DIN_{length}"] = train_din(work, length, args.epochs, args.seed)
    for config in (ModelConfig(kind="base", seq_len=20), ModelConfig(kind="base", seq_len=50), ModelConfig(kind="hgcn", seq_len=20)):
        metrics = train(work.path, CACHE / f"peer-{args.scale}" / config.name, config, TrainConfig(epochs=args.epochs, seed=args.seed), verbose=0)
        results[f"dropdown_rank {config.name}"] = {k: metrics[k] for k in ("test_auc", "best_epoch", "steady_examples_per_second",
                                                                           "train_seconds_whole_call")}
        results[f"dropdown_rank {config.name}"]["test_auc"] = round(metrics["test_auc"], 4)
    for name, row in results.items():
        print(f"{name:28s} test AUC {row['test_auc']:.4f}  {row['steady_examples_per_second']:>9,.0f} examples/s")
    write_result("peer", {"scale": args.scale, "batch_size": 1024, "models": results}, args.out)


if __name__ == "__main__":
    main()
