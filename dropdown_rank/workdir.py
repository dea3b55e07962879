"""A built work directory, read back: the read side of ``build`` (and of ``build --engine beam``).

``build.py`` writes a work directory; training, evaluation and export read it through :class:`Work`
(its split, vocabularies, graph history, samples and fingerprint) without importing ``build.py`` or
the Beam engine (``tests/test_layout.py``).
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dropdown_rank._io import read_json
from dropdown_rank.features import RECORDS_FORMAT_VERSION, RECORDS_SUFFIX, record_path
from dropdown_rank.tables import RELATIONS, DailyTables, NeighborTable
from dropdown_rank.split import TimeSplit
from dropdown_rank.vocab import read_known_since, read_vocabulary

DATA_PARTS = ("vocab", "graph", "samples")


def fingerprint(work_dir: Path, parts: tuple = DATA_PARTS) -> str:
    """SHA-256 of a work directory's data (samples, vocabularies, graphs; or only ``parts`` of them): its identity for runs.

    It hashes the decoded content (Arrow IPC streams of the Parquet tables, raw arrays of the
    ``.npz`` tables), not the file bytes: the same data written by another pyarrow (whose version
    is in every Parquet footer) or zlib keeps its identity. Training records are left out: each is
    encoded from the Parquet shard beside it, whose content is hashed, by the codec whose
    ``RECORDS_FORMAT_VERSION`` is hashed.
    """
    digest = hashlib.sha256()
    digest.update(f"records format {RECORDS_FORMAT_VERSION}".encode())
    for path in sorted(p for part in parts for p in (work_dir / part).rglob("*")
                       if p.is_file() and not p.name.endswith(RECORDS_SUFFIX)):
        digest.update(str(path.relative_to(work_dir)).encode())
        if path.suffix == ".parquet":
            sink = pa.BufferOutputStream()
            table = pq.read_table(path).replace_schema_metadata(None)  # pandas/pyarrow versions live there
            with pa.ipc.new_stream(sink, table.schema) as stream:
                stream.write_table(table)
            digest.update(sink.getvalue())
        else:
            with np.load(path) as arrays:
                for name in sorted(arrays.files):
                    array = np.ascontiguousarray(arrays[name])
                    digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
                    digest.update(array.tobytes())
    return digest.hexdigest()


def samples_fingerprint(work_dir: Path) -> str:
    """The identity of a work directory's rows and ids without its graph: two builds that differ only in how the
    graph is made (``--q2q-source``, ``--neighbor-rank``, ...) share it, so their runs can share a report."""
    return fingerprint(work_dir, ("vocab", "samples"))


def shard_files(samples_dir: str | Path, split: str) -> list[Path]:
    """The Parquet shards of one split, in order; a clear error when the split has none."""
    samples_dir = Path(samples_dir)
    files = sorted((samples_dir / split).glob("part-*.parquet"))
    if not files:
        if samples_dir.is_dir():  # a finished build whose period for this split held no impressions
            raise ValueError(f"{samples_dir.parent}: no {split} samples: the build's {split} period holds no impressions "
                             "(see 'samples' in its stats.json); rebuild with other --valid-days/--test-days")
        raise FileNotFoundError(f"{samples_dir}: no samples (run `dropdown-rank build` first)")
    return files


def record_files(samples_dir: str | Path, split: str) -> list[Path]:
    """The training record files of one split, in shard order; a clear error for a build that predates them."""
    records = [record_path(f) for f in shard_files(samples_dir, split)]
    missing = [r for r in records if not r.exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no training records for this sample shard ({len(missing)} of {len(records)} "
                                f"missing): the work directory was built before records existed; rebuild it with `dropdown-rank build`")
    return records


def read_samples(samples_dir: str | Path, split: str, columns=None) -> pd.DataFrame:
    """All shards of one split as a DataFrame (for evaluation and inspection, not for training)."""
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in shard_files(samples_dir, split)]).to_pandas()


@dataclasses.dataclass
class Work:
    """A built work directory, read back: what training, evaluation and export need."""

    path: Path
    split: TimeSplit
    config: dict
    has_truth: bool
    fingerprint: str
    windows: dict | None = None  # build.window_coverage; None for builds made before it

    @classmethod
    def open(cls, path: str | Path) -> "Work":
        path = Path(path)
        staging = path.parent / f".{path.name}.building"
        if not (path / "build.json").exists():
            building = f" (a build into it is unfinished or was interrupted: {staging} exists)" if staging.exists() else ""
            raise FileNotFoundError(f"{path}: not a complete work directory (no build.json){building}; run `dropdown-rank build`")
        meta = read_json(path / "build.json")
        if "fingerprint" not in meta or "rows_start" not in meta["split"]:
            raise ValueError(f"{path}: built by an older dropdown_rank (no daily graphs); rebuild it with `dropdown-rank build`")
        split = TimeSplit(**{k: v for k, v in meta["split"].items() if not k.endswith("_iso")})
        return cls(path, split, meta["config"], bool(meta["has_truth"]), meta["fingerprint"], meta.get("windows"))

    def vocabulary(self, name: str) -> list[str]:
        return read_vocabulary(self.path / "vocab", name)

    def known_since(self, name: str):
        return read_known_since(self.path / "vocab", name)

    def daily_tables(self, relation: str) -> DailyTables:
        """Every snapshot: one per day with samples, then the day after the log."""
        return DailyTables.load(self.path / "graph" / f"{relation}.npz", self.vocabulary(RELATIONS[relation][1]))

    def neighbor_table(self, relation: str) -> NeighborTable:
        """The latest snapshot (built from every event of the log): what ``export --graph`` with this build serves."""
        return self.daily_tables(relation).latest()

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    def truth(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.path / "truth.parquet") if self.has_truth else None

    @property
    def max_len(self) -> int:
        return int(self.config["samples"]["max_len"])

    @property
    def neighbors(self) -> int:
        return int(self.config["graph"]["neighbors"])

