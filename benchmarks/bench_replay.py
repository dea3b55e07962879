"""Serving-feature parity and its cost: ``dropdown-rank replay`` on the synthetic world, AOL-dev and Best Buy.

    python benchmarks/bench_replay.py [--worlds static aol-dev bestbuy] [--splits train valid test] [--out results/replay.json]

Each world's logs are made and built once with the command-line defaults (``synth --scale static --seed 0``,
``aol``, ``bestbuy``, then ``build``), cached under ``benchmarks/.cache``. For each split, ``replay`` runs as its own
process: rows compared and mismatches per field from its report, the replay's own seconds (every event and
impression fed through the reference assembler, every row of the split answered) and seconds per million records
fed, and the process's wall time and peak resident memory. A test-split replay is mostly ingestion (its rows are
the last few days); a training-split replay answers most rows of the log.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import CACHE, HERE, default_work, timed, write_result

SHARED = HERE.parent.parent / "shared" / "data"
CONVERT = {"aol-dev": ["aol", "--src", str(SHARED / "aol-dev" / "user_search_logs.tar.gz")],
           "bestbuy": ["bestbuy", "--src", str(SHARED / "bestbuy")]}
CLI = [sys.executable, "-m", "dropdown_rank.cli"]


def world(name: str) -> tuple[Path, Path]:
    """The world's logs and work directory, converted and built once."""
    if name == "static":
        work = default_work("static", 0)
        return work.parent / "logs", work
    root = CACHE / name
    if not (root / "work" / "build.json").exists():
        timed(CLI + CONVERT[name] + ["--out", str(root / "logs")])
        timed(CLI + ["build", "--logs", str(root / "logs"), "--out", str(root / "work")])
    return root / "logs", root / "work"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=["static", "aol-dev", "bestbuy"], choices=("static", "aol-dev", "bestbuy"))
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"], choices=("train", "valid", "test"))
    parser.add_argument("--out", type=Path, help="JSON output (default: benchmarks/results/replay.json)")
    args = parser.parse_args()
    results = {}
    for name in args.worlds:
        logs, work = world(name)
        results[name] = {}
        for split in args.splits:
            with tempfile.TemporaryDirectory() as tmp:
                report_path = Path(tmp) / "report.json"
                # exit 1 is a mismatch: recorded, not a failed benchmark
                run = timed(CLI + ["replay", "--logs", str(logs), "--work", str(work), "--split", split, "--report", str(report_path)],
                            exit_codes=(0, 1))
                report = json.loads(report_path.read_text())
            results[name][split] = {
                **{k: report[k] for k in ("rows_compared", "events", "impressions", "replay_s", "seconds_per_million_records",
                                          "users_kept", "mismatches")},
                "process_seconds": run["seconds"], "peak_memory_mb": run["peak_memory_mb"]}
            print(f"{name} {split}: {report['rows_compared']:,} rows, {len(report['mismatches'])} fields mismatched, "
                  f"{report['seconds_per_million_records']} s per million records")
    write_result("replay", {"fields_compared": report["fields_compared"], "not_compared": report["not_compared"],
                            "worlds": results}, args.out)


if __name__ == "__main__":
    main()
