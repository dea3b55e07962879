"""Shared helpers for the benchmarks: machine facts, JSON output, the default world."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import dropdown_rank  # noqa: F401  (environment before tensorflow)

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: the world's scale and where to write the JSON."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--scale", default="default", choices=("tiny", "small", "default"))
    parser.add_argument("--out", type=Path, help="JSON output (default: benchmarks/results/<name>.json)")
    return parser


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow as tf

    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "tensorflow": tf.__version__,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def write_result(name: str, payload: dict, out: Path | None = None) -> Path:
    out = out or HERE / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(), **payload}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{name}: wrote {out}")
    return out


def default_work(scale: str = "default", seed: int = 0) -> Path:
    """A built work directory of the synthetic world (built once, cached under benchmarks/.cache)."""
    from dropdown_rank.build import build
    from dropdown_rank.logs.synth import write_world

    root = CACHE / f"{scale}-{seed}"
    if not (root / "work" / "stats.json").exists():
        write_world(root / "logs", scale=scale, seed=seed)
        build(root / "logs", root / "work")
    return root / "work"


def run_python(code: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, check=False)
