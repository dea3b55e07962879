"""``dropdown-rank export``: a TF SavedModel that scores raw dropdown features.

The ``serving_default`` signature takes a batch of (request, candidate) rows:

===================  ==========  ============  ==================================================
input                dtype       shape         meaning
===================  ==========  ============  ==================================================
user_id              string      [B]           the user ("" or unseen ids score via OOV)
candidate            string      [B]           the suggested query
query_history        string      [B, H]        the user's queries, **most recent first**, "" padded
query_history_ts     int64       [B, H]        their epoch seconds (any value where padded)
item_history         string      [B, H2]       clicked items, most recent first, "" padded
item_history_ts      int64       [B, H2]       their epoch seconds
request_ts           int64       [B]           when the dropdown is shown
===================  ==========  ============  ==================================================

and returns ``ctr`` float32 [B], the click probability (position-free: a PAL tower is not part of
serving). Histories are **dense and padded with ""** rather than ragged: TF Serving's REST and
gRPC APIs carry dense tensors only, and "" is the model's padding id, so padding never changes a
score. Any length H works; histories longer than the model's L are cut to the most recent L. A
history and its timestamps must have the same shape, every input the same batch size, and the
batch at least one row; otherwise the call fails with an InvalidArgumentError that says which.

Everything else (vocabularies, neighbor tables, weights) is inside the SavedModel: it loads with
``tf.saved_model.load`` in a process with only tensorflow installed. The export path is the one
STACK.md verified with spektral layers: a ``tf.Module`` tracking the ranker's variables and lookup
tables, plus a ``tf.function`` with an explicit input signature that calls the ranker.

Options: ``graph_dir`` swaps in another build's neighbor tables (a new day's graph) without
retraining; ``precompute_context`` stores every node's graph context as a table, so a served GNN
model gathers instead of aggregating neighbors per request.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dropdown_rank import __version__
from dropdown_rank._io import read_json, write_json
from dropdown_rank.graph import RELATIONS
from dropdown_rank.samples import read_samples
from dropdown_rank.train import load_run

SIGNATURE = {
    "user_id": tf.TensorSpec([None], tf.string, name="user_id"),
    "candidate": tf.TensorSpec([None], tf.string, name="candidate"),
    "query_history": tf.TensorSpec([None, None], tf.string, name="query_history"),
    "query_history_ts": tf.TensorSpec([None, None], tf.int64, name="query_history_ts"),
    "item_history": tf.TensorSpec([None, None], tf.string, name="item_history"),
    "item_history_ts": tf.TensorSpec([None, None], tf.int64, name="item_history_ts"),
    "request_ts": tf.TensorSpec([None], tf.int64, name="request_ts"),
}
LOOKUPS = ("user_lookup", "query_lookup", "item_lookup")


def _checked(features: dict) -> dict:
    """The features, made to depend on shape checks with messages a client can act on."""
    batch = tf.shape(features["user_id"])[0]
    checks = [tf.debugging.assert_positive(batch, message="empty batch: send at least one (request, candidate) row")]
    for name, value in features.items():
        if name != "user_id":
            checks.append(tf.debugging.assert_equal(tf.shape(value)[0], batch, message=f"{name} has a different batch size than user_id"))
    for kind in ("query", "item"):
        checks.append(tf.debugging.assert_equal(
            tf.shape(features[f"{kind}_history"]), tf.shape(features[f"{kind}_history_ts"]),
            message=f"{kind}_history and {kind}_history_ts must have the same shape [batch, length]"))
    with tf.control_dependencies(checks):
        return {name: tf.identity(value) for name, value in features.items()}


class ServingModule(tf.Module):
    """What the SavedModel holds: the ranker's variables and lookup tables, and the signature."""

    def __init__(self, ranker):
        super().__init__(name="dropdown_rank")
        self.model_variables = list(ranker.variables)
        self.lookup_tables = [getattr(ranker, name).lookup_table for name in LOOKUPS]

        # The ranker is reached through the closure, not an attribute, so that saving does not
        # try to serialize the Keras model itself (that fails for spektral layers, STACK.md).
        @tf.function(input_signature=[SIGNATURE])
        def serve(features):
            return {"ctr": tf.sigmoid(ranker(_checked(features), training=False))}

        self.serve = serve


def serving_example(work_dir: Path, max_candidates: int = 10) -> dict:
    """A TF Serving REST body (``{"instances": [...]}``) for one test request of the work directory."""
    frame = read_samples(work_dir / "samples", "test", columns=["request_id", "user_id", "candidate", "request_ts", "query_history",
                                                                 "query_history_ts", "item_history", "item_history_ts"])
    sizes = frame.groupby("request_id").size()
    request = sizes.idxmax() if sizes.max() < max_candidates else sizes[sizes >= max_candidates].index[0]
    rows = frame[frame["request_id"] == request].head(max_candidates)
    instances = []
    for row in rows.itertuples(index=False):
        instances.append({
            "user_id": row.user_id, "candidate": row.candidate, "request_ts": int(row.request_ts),
            "query_history": list(row.query_history[:20]), "query_history_ts": [int(t) for t in row.query_history_ts[:20]],
            "item_history": list(row.item_history[:20]), "item_history_ts": [int(t) for t in row.item_history_ts[:20]],
        })
    # TF Serving batches instances into dense tensors, so every instance needs the same lengths;
    # pad with "" / 0 to the longest (here all rows share one user, so they already match).
    for kind in ("query", "item"):
        width = max(len(i[f"{kind}_history"]) for i in instances)
        for i in instances:
            pad = width - len(i[f"{kind}_history"])
            i[f"{kind}_history"] += [""] * pad
            i[f"{kind}_history_ts"] += [0] * pad
    return {"instances": instances}


def instances_to_tensors(body: dict) -> dict:
    """The signature's keyword arguments for a REST body, as TF Serving would build them."""
    instances = body["instances"]
    return {name: tf.constant(np.array([i[name] for i in instances]), dtype=spec.dtype) for name, spec in SIGNATURE.items()}


def export(run_dir, out_dir, graph_dir=None, precompute_context: bool = False, progress=print) -> dict:
    """Write the SavedModel, ``model_card.json`` and ``serving_example.json``. Returns the model card."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    started = time.perf_counter()
    ranker = load_run(run_dir, graph_dir)
    if precompute_context:
        if not ranker.config.is_gnn:
            raise ValueError(f"{ranker.config.name} has no graph context to precompute")
        ranker.freeze_context()
    module = ServingModule(ranker)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve.get_concrete_function()})

    config = read_json(run_dir / "config.json")
    metrics = read_json(run_dir / "metrics.json")
    work_dir = Path(config["work"])
    card = {
        "model": ranker.config.name,
        "kind": ranker.config.kind,
        "seq_len": ranker.config.seq_len,
        "neighbors": ranker.config.neighbors if ranker.config.is_gnn else None,
        "id_time_only": ranker.config.id_time_only,
        "training_period": {"start": config["split"]["train_start_iso"], "end": config["split"]["valid_start_iso"],
                            "start_ts": config["split"]["train_start"], "end_ts": config["split"]["valid_start"]},
        "test_auc": metrics["test_auc"],
        "test_logloss": metrics["test_logloss"],
        "graph": None if not ranker.config.is_gnn else {
            "source": str(Path(graph_dir).resolve()) if graph_dir else str(run_dir.resolve()),
            "swapped": graph_dir is not None,
            "snapshot_ts": {r: int(np.load((Path(graph_dir) if graph_dir else run_dir) / "graph" / f"{r}.npz")["snapshot_ts"]) for r in RELATIONS},
            "context_precomputed": precompute_context,
        },
        "signature": {
            "name": "serving_default",
            "inputs": {name: {"dtype": spec.dtype.name, "shape": [d if d is not None else -1 for d in spec.shape.as_list()]}
                       for name, spec in SIGNATURE.items()},
            "outputs": {"ctr": {"dtype": "float32", "shape": [-1]}},
            "histories": "most recent first, padded with \"\" (timestamps with anything); longer than seq_len is cut to the latest",
        },
        "run": str(run_dir.resolve()),
        "exported_with": {"dropdown_rank": __version__, "tensorflow": tf.__version__},
    }
    write_json(staging / "model_card.json", card)
    if (work_dir / "samples").exists():
        write_json(staging / "serving_example.json", serving_example(work_dir))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    progress(f"export: {card['model']} SavedModel in {out_dir} ({time.perf_counter() - started:.1f}s"
             f"{', graph context precomputed' if precompute_context else ''}{', graph swapped' if graph_dir else ''})")
    return card
