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
prefix               string      [B]           what the user has typed ("" when nothing)
user_candidate_count int64       [B]           the user's queries equal to the candidate in the
                                               look-back before request_ts (build's
                                               ``--personal-days``, default 365); 0 if none
user_candidate_age   int64       [B]           seconds since the latest of them; -1 if none
candidate_query_count int64      [B]           the candidate issued as a query by anybody in the
                                               ``--popularity-days`` (default 30) whole days
                                               before the request's day (UTC); 0 if unseen
candidate_impressions int64      [B]           the candidate shown in a dropdown, same days
candidate_clicks     int64       [B]           the candidate clicked in a dropdown, same days
===================  ==========  ============  ==================================================

The counters are what a serving system keeps: a per-user count and last time per query, and
per-candidate daily totals refreshed once a day (so never the request's own day). A new user or
candidate sends 0 (and -1 for the age); exact matches with the history are computed inside the
model from ``candidate`` and ``query_history``.

and returns ``ctr`` float32 [B], the click probability (position-free: a PAL tower is not part of
serving). Histories are **dense and padded with ""** rather than ragged: TF Serving's REST and
gRPC APIs carry dense tensors only, and "" is the model's padding id, so padding never changes a
score. Any length H works; histories longer than the model's L are cut to the most recent L.

**The serving contract** (:func:`check_serving_features`, applied inside the signature). A request
that breaks it fails with an ``InvalidArgumentError`` whose message names the input; nothing is
scored silently:

* every input has the same batch size B, and B >= 1;
* the histories and their timestamps are 2-D ``[B, H]``, and each history has the same shape as
  its timestamps (a 1-D history is refused: it is one user's history, not a batch of them);
* ``candidate`` is not blank: "" is the padding id, and " " (or any text the build strips to nothing, such as
  U+00A0) is not a suggestion; ``candidate`` and ``prefix`` are at most ``MAX_ID_CHARS`` (1,000) characters, as
  the build takes;
* ``request_ts`` is epoch seconds from 1990 to 2100, the build's range (a millisecond value is past 2100);
* the counts are >= 0, ``user_candidate_age`` is -1 or >= 1 (the counted queries are strictly before the
  request) and agrees with the count (an age exactly when the count is above 0), and ``candidate_clicks``
  <= ``candidate_impressions``;
* no non-padded history entry is at or after ``request_ts`` (the model was trained on histories strictly
  before the request).

Unseen ids score through the OOV bucket, and empty histories (H = 0, or all "") score.

Everything else (vocabularies, neighbor tables, weights) is inside the SavedModel: it loads with
``tf.saved_model.load`` in a process with only tensorflow installed. How: a ``tf.Module`` tracks
the ranker's variables and lookup tables, and a ``tf.function`` with an explicit input signature
calls the ranker through a closure. Saving the Keras model itself is avoided because it fails for
models with spektral layers; the module route saves every ranker, and the tests load the result in
a process where dropdown_rank, spektral and tensorflow-recommenders cannot be imported.

**The output directory.** The export is written into a temporary sibling directory
(``.DIR.export-*.partial``) and swapped in with one rename when complete, so a killed export leaves
``DIR`` as it was: absent, or the previous complete export. ``DIR`` is replaced only if it is empty
or a previous export of this tool (its ``model_card.json`` carries ``"tool": "dropdown_rank
export"``); anything else is refused unless ``overwrite=True``. On Linux the swap is an atomic
exchange (``renameat2(RENAME_EXCHANGE)``); elsewhere it is two renames, and a kill between them
leaves the previous export in ``.DIR.export-*.old``, which the next export to ``DIR`` restores
before it starts.

Options: ``graph_dir`` swaps in another build's neighbor tables (a new day's graph) without
retraining; ``precompute_context`` stores every node's graph context as a table, so a served GNN
model gathers instead of aggregating neighbors per request.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from dropdown_rank import __version__
from dropdown_rank._io import _UMASK, read_json, write_json
from dropdown_rank.workdir import Work
from dropdown_rank.tables import RELATIONS, NeighborTable
from dropdown_rank.model import SIGNATURE, ModelConfig, check_serving_features
from dropdown_rank.vocab import read_vocabulary
from dropdown_rank.features import BY_NAME, MODEL_INPUTS
from dropdown_rank.workdir import read_samples
from dropdown_rank.train import load_run

# A swapped graph (``--graph``) must give neighbors to at least this share of what the run's own graph covered: a build
# of another world (8 of 1,229 queries in common) would otherwise be served as "graph swapped", each id without context.
MIN_GRAPH_OVERLAP = 0.5
LOOKUPS = ("user_lookup", "query_lookup", "item_lookup")
TOOL = "dropdown_rank export"  # model_card.json["tool"]: marks a directory this tool may replace


class ServingModule(tf.Module):
    """What the SavedModel holds: the ranker's variables and lookup tables, and the signature."""

    def __init__(self, ranker):
        super().__init__(name="dropdown_rank")
        self.model_variables = list(ranker.variables)
        self.graph_state = ranker.graph_state()
        self.lookup_tables = [getattr(ranker, name).lookup_table for name in LOOKUPS]

        # The ranker is reached through the closure, not an attribute, so that saving does not
        # try to serialize the Keras model itself (that fails for models with spektral layers).
        @tf.function(input_signature=[SIGNATURE], autograph=False)  # no AutoGraph, as in training (train.predictor)
        def serve(features):
            return {"ctr": ranker.score(features)}

        self.serve = serve


def _plain(value):
    """A JSON-ready Python value for a NumPy scalar (strings are already Python's)."""
    return value.item() if isinstance(value, np.generic) else value


def serving_example(work_dir: Path, max_candidates: int = 10) -> dict:
    """A TF Serving REST body (``{"instances": [...]}``) for one test request of the work directory."""
    frame = read_samples(work_dir / "samples", "test", columns=["request_id", *MODEL_INPUTS])
    sizes = frame.groupby("request_id").size()
    request = sizes.idxmax() if sizes.max() < max_candidates else sizes[sizes >= max_candidates].index[0]
    rows = frame[frame["request_id"] == request].head(max_candidates)
    instances = [{name: [_plain(value) for value in row[name][:20]] if BY_NAME[name].history else _plain(row[name])
                  for name in MODEL_INPUTS} for _, row in rows.iterrows()]
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


class ExportError(ValueError):
    """An export that would lose data or cannot be made from the given run; the message says why."""


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an export of this tool: a ``model_card.json`` with its marker (or, for
    exports written before the marker existed, its ``exported_with.dropdown_rank`` field)."""
    try:
        card = json.loads((Path(path) / "model_card.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and (card.get("tool") == TOOL or "dropdown_rank" in (card.get("exported_with") or {}))


def _same_data(work_dir: Path, trained_fingerprint: str | None) -> bool:
    """Whether ``work_dir`` still holds the data a run was trained on (so its test rows are the run's)."""
    try:
        return Work.open(work_dir).fingerprint == trained_fingerprint
    except (FileNotFoundError, ValueError):
        return False


def check_run(run_dir: Path) -> None:
    """A run is exportable once training finished: config.json, weights/ and metrics.json exist."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    for needed, what in (("config.json", "its configuration"), ("weights", "the trained weights"),
                         ("metrics.json", "its test metrics")):
        if not (run_dir / needed).exists():
            raise ExportError(f"{run_dir} is not a finished run: {needed} ({what}) is missing; train it with "
                              f"`dropdown-rank train --out {run_dir} ...` (rerunning the same command resumes it)")


def check_out_dir(out_dir: Path, overwrite: bool = False, keep=()) -> None:
    """Refuse an ``out_dir`` that is a file, holds something other than an export of this tool (unless
    ``overwrite``), or contains one of the ``keep`` directories (the run or the graph being exported)."""
    if out_dir.is_symlink():
        raise ExportError(f"--out {out_dir} is a symbolic link; give the directory itself")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a directory")
    resolved = out_dir.resolve()
    for path in keep:
        if path is not None and (resolved == Path(path).resolve() or resolved in Path(path).resolve().parents):
            raise ExportError(f"--out {out_dir} contains {path}, which this export reads; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_export_dir(out_dir) and not overwrite:
        raise ExportError(f"--out {out_dir} exists and is not an export of this tool (no model_card.json from "
                          f"dropdown-rank export); refusing to replace it. Choose another --out, or pass --overwrite "
                          f"to delete what it holds")


def _siblings(out_dir: Path, suffix: str) -> list[Path]:
    return sorted(out_dir.parent.glob(f".{out_dir.name}.export-*{suffix}"), key=lambda p: p.stat().st_mtime)


def _recover(out_dir: Path, progress) -> None:
    """Clean up after a killed export: drop unfinished staging directories; if a kill came between the
    two renames of a non-atomic swap, put the previous export back first."""
    old = _siblings(out_dir, ".old")
    if old and not out_dir.exists():
        old[-1].rename(out_dir)
        progress(f"export: restored the previous export {out_dir} from {old[-1].name} (an earlier export was interrupted)")
        old = old[:-1]
    for path in _siblings(out_dir, ".partial") + old:
        shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``). False where unsupported.

    Through ctypes because Python's ``os`` has no ``renameat2`` or rename flags; where the call is
    missing or refused the caller falls back to two renames. Pinned by ``tests/test_export.py``'s kill
    tests (``test_a_killed_export_leaves_the_previous_export_intact``: the previous export, byte for byte)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Make the complete ``staging`` directory ``out_dir``; delete what ``out_dir`` held."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    if _exchange(staging, out_dir):
        shutil.rmtree(staging)  # now the previous content
        return
    old = staging.with_name(staging.name[: -len(".partial")] + ".old")
    out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old)


def graph_coverage(run_dir: Path, graph_dir: Path) -> dict:
    """Per relation, the share of the run's vocabulary (queries for q2q, items for i2i) that the latest snapshot of its
    own graph (``own``) and of ``graph_dir``'s (``swapped``) give a neighbor the run also knows: what serving can use,
    since a neighbor outside the run's vocabulary is dropped (``model.table_in_model_space``)."""
    out = {}
    for relation, (_, vocab_name) in RELATIONS.items():
        tokens = pd.Index(read_vocabulary(run_dir / "vocab", vocab_name))
        shares = {}
        for name, source in (("own", run_dir), ("swapped", Work.open(graph_dir).path)):
            table = NeighborTable.load(source / "graph" / f"{relation}.npz", read_vocabulary(source / "vocab", vocab_name))
            known = tokens.get_indexer(table.nodes) >= 0  # per table node ("" padding first: unknown)
            ids = np.asarray(table.ids)
            served = known & ((ids > 0) & known[ids]).any(axis=1)
            shares[name] = round(float(served.sum()) / len(tokens), 4) if len(tokens) else 0.0
        out[relation] = shares
    return out


def check_graph_coverage(coverage: dict, graph_dir, force: bool, progress) -> None:
    progress("graph: the run's ids with neighbors, its own graph -> --graph: " + ", ".join(
        f"{relation} {100 * c['own']:.1f}% -> {100 * c['swapped']:.1f}%" for relation, c in coverage.items()))
    low = [relation for relation, c in coverage.items() if c["swapped"] < MIN_GRAPH_OVERLAP * c["own"]]
    if low and not force:
        raise ExportError(f"--graph {graph_dir} gives neighbors to far fewer of the run's ids than its own graph did ("
                          + ", ".join(f"{r}: {100 * coverage[r]['swapped']:.1f}% against {100 * coverage[r]['own']:.1f}%" for r in low)
                          + f"; the limit is {MIN_GRAPH_OVERLAP:.0%} of the own share): most likely another world's build or "
                            "another id space; pass --force-graph to export it anyway")


def export(run_dir, out_dir, graph_dir=None, precompute_context: bool = False, overwrite: bool = False, progress=print,
           force_graph: bool = False) -> dict:
    """Write the SavedModel, ``model_card.json`` and ``serving_example.json``. Returns the model card.

    ``out_dir`` is replaced only when it is empty or a previous export of this tool, unless
    ``overwrite``; the export is staged next to it and swapped in when complete. A ``graph_dir`` whose latest
    snapshot gives neighbors to less than :data:`MIN_GRAPH_OVERLAP` of the share of the run's ids its own graph
    covered is refused unless ``force_graph``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    started = time.perf_counter()
    check_run(run_dir)
    check_out_dir(out_dir, overwrite, keep=(run_dir, graph_dir))
    config = read_json(run_dir / "config.json")
    metrics = read_json(run_dir / "metrics.json")
    coverage = None
    if graph_dir is not None and ModelConfig.from_dict(config["model"]).is_gnn:
        coverage = graph_coverage(run_dir, Path(graph_dir))
        check_graph_coverage(coverage, graph_dir, force_graph, progress)
    ranker = load_run(run_dir, graph_dir)
    if precompute_context:
        if not ranker.config.is_gnn:
            raise ExportError(f"{ranker.config.name} has no graph context to precompute")
        ranker.freeze_context()
    module = ServingModule(ranker)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _recover(out_dir, progress)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", suffix=".partial", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700; a serving container may run as another user
        tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve.get_concrete_function()})
        work_dir = Path(config["work"])
        card = {
            "tool": TOOL,
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
                "coverage": coverage,  # with --graph: the share of the run's ids with neighbors, own graph and swapped
                # The latest snapshot (a graph file may hold one per day; serving loads the latest).
                "snapshot_ts": {r: int(np.max(np.load((Path(graph_dir) if graph_dir else run_dir) / "graph" / f"{r}.npz")["snapshot_ts"]))
                                for r in RELATIONS},
                "context_precomputed": precompute_context,
            },
            "signature": {
                "name": "serving_default",
                "inputs": {name: {"dtype": spec.dtype.name, "shape": [d if d is not None else -1 for d in spec.shape.as_list()]}
                           for name, spec in SIGNATURE.items()},
                "outputs": {"ctr": {"dtype": "float32", "shape": [-1]}},
                "histories": "most recent first, padded with \"\" (timestamps with anything); longer than seq_len is cut to the latest",
                "counter_windows": config.get("counter_windows"),
                "contract": "InvalidArgumentError naming the input for: an empty batch, different batch sizes, a history that is "
                            "not [batch, length] or whose timestamps have another shape, a blank candidate, a candidate or prefix over "
                            "1,000 characters, request_ts before 1990 "
                            "or after 2100 (milliseconds), a non-padded history timestamp at or after request_ts, a negative count, "
                            "user_candidate_age below -1, 0, or disagreeing with user_candidate_count, candidate_clicks above "
                            "candidate_impressions",
            },
            "run": str(run_dir.resolve()),
            "exported_with": {"dropdown_rank": __version__, "tensorflow": tf.__version__},
        }
        if _same_data(work_dir, config.get("work_fingerprint")):
            write_json(staging / "serving_example.json", serving_example(work_dir))
        else:
            progress(f"export: no serving_example.json: {work_dir}, the run's work directory, is gone or was rebuilt from "
                     "other data since training")
        write_json(staging / "model_card.json", card)  # the marker: written last
        replaced = out_dir.exists()
        _swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"export: {card['model']} SavedModel in {out_dir} ({time.perf_counter() - started:.1f}s"
             f"{', graph context precomputed' if precompute_context else ''}{', graph swapped' if graph_dir else ''}"
             f"{', replaced the previous content' if replaced else ''})")
    return card
