"""Bytes of each model's training data on the built world, and how the GNN's neighbor history is stored.

    python benchmarks/bench_storage.py [--scale static] [--work WORK_DIR] [--out results/storage.json]

Measured as the report's storage section measures it (``evaluate/storage.py``: Parquet files of the
training split's sequences cut to L, the vocabularies, and the work directory's ``graph/*.npz`` as
they are on disk), for base_20, base_50 and a GNN_20, plus the neighbor history's shape: snapshots,
stored row versions, and the rows the same days would hold stored whole. ``--work`` measures an
existing work directory instead of the cached default world (for example one built by an older
version, to compare storage formats).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from common import bench_parser, default_work, write_result
from dropdown_rank.workdir import Work
from dropdown_rank.evaluate.storage import measure_storage, model_storage
from dropdown_rank.tables import RELATIONS


def history_shape(work: Work) -> dict:
    out = {}
    for relation in RELATIONS:
        with np.load(work.path / "graph" / f"{relation}.npz") as data:
            days = len(data["snapshot_ts"])
            if "node" in data.files:  # stored as changes
                versions, rows = len(data["node"]), int(data["rows"])
            else:  # every day whole: [days, rows, K]
                versions, rows = None, data["ids"].shape[1]
        out[relation] = {"snapshots": days, "rows_per_snapshot": rows, "row_versions_stored": versions,
                         "rows_if_stored_whole": days * rows,
                         "file_bytes": (work.path / "graph" / f"{relation}.npz").stat().st_size}
    return out


def main(argv=None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--work", type=Path, help="a built work directory (default: the cached synthetic world)")
    args = parser.parse_args(argv)
    work = Work.open(args.work or default_work(args.scale))
    with tempfile.TemporaryDirectory() as scratch:
        measured = measure_storage(work, [20, 50], with_gnn=False, scratch=Path(scratch) / "storage")
    models = {"base_20": model_storage("base", 20, measured), "base_50": model_storage("base", 50, measured),
              "gnn_20": model_storage("hgcn", 20, measured)}
    base_50 = models["base_50"]["total_bytes"]
    for name, model in models.items():
        model["share_of_base_50"] = round(model["total_bytes"] / base_50, 4)
        print(f"{name}: {model['total_bytes'] / 1e6:.2f} MB, {model['share_of_base_50']:.0%} of base_50")
    write_result("storage", {"work": str(work.path), "train_examples": measured["train_examples"],
                             "neighbor_history": history_shape(work), "models": models}, args.out)


if __name__ == "__main__":
    main()
