"""Shared helpers for the benchmarks: machine facts, JSON output, the default world."""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import tempfile
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dropdown_rank  # noqa: F401  (environment before tensorflow)
from dropdown_rank._io import write_json

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: the world's scale and where to write the JSON.

    The scale defaults to ``static``, the world every figure in benchmarks/results was measured on (the default world
    until 2026-12-04), so that a re-run compares with them."""
    from dropdown_rank.logs.synth import SCALES

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--scale", default="static", choices=tuple(SCALES))
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
    write_json(out, {"benchmark": name, "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                     **payload})
    print(f"{name}: wrote {out}")
    return out


def default_work(scale: str = "static", seed: int = 0) -> Path:
    """A built work directory of the synthetic world (built once, cached under benchmarks/.cache, and rebuilt when the
    cached world's configuration is not the scale's: a preset that changed must not be measured from an old cache)."""
    import dataclasses
    import json

    from dropdown_rank.build import build
    from dropdown_rank.logs.synth import SCALES, WorldConfig, write_world

    root = CACHE / f"{scale}-{seed}"
    world = root / "logs" / "world.json"
    # A world written before a WorldConfig field existed had that field's default.
    defaults = {f.name: f.default for f in dataclasses.fields(WorldConfig) if f.default is not dataclasses.MISSING}
    current = world.exists() and {**defaults, **json.loads(world.read_text())["config"]} == dataclasses.asdict(SCALES[scale])
    if not current or not (root / "work" / "stats.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_world(root / "logs", scale=scale, seed=seed)
        build(root / "logs", root / "work")
    return root / "work"


def timed(argv: list, exit_codes=(0,)) -> dict:
    """Run ``argv`` as a child process; its wall time, its own peak resident memory (``wait4``) and exit code, which
    must be one of ``exit_codes``."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode not in exit_codes:
            raise RuntimeError(f"{' '.join(map(str, argv))} failed:\n{err.read()[-3000:]}")
        return {"seconds": round(time.perf_counter() - started, 1), "peak_memory_mb": round(usage.ru_maxrss / 1024, 1),
                "stdout": out.read(), "exit_code": child.returncode}


def run_python(code: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, check=False)


def profile_ops(step, calls: int) -> dict:
    """Run ``step()`` ``calls`` times under the TF profiler; host self time per call, by op type and op."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            step()
        tf.profiler.experimental.stop()
        data, _ = plugin.xspace_to_tools_data(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True), "framework_op_stats", {})
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = {c["label"]: i for i, c in enumerate(table["cols"])}
    by_type, by_name = {}, {}
    for row in table["rows"]:
        cells = [c["v"] if c else None for c in row["c"]]
        if cells[columns["Host/device"]] != "Host" or cells[columns["Operation Type"]] == "IDLE":
            continue
        self_ms = cells[columns["Total self-time (us)"]] / 1000.0 / calls
        by_type[cells[columns["Operation Type"]]] = by_type.get(cells[columns["Operation Type"]], 0.0) + self_ms
        by_name[cells[columns["Operation Name"]]] = by_name.get(cells[columns["Operation Name"]], 0.0) + self_ms
    top = lambda d, n: {k: round(v, 3) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]}
    return {"self_ms_per_call_total": round(sum(by_type.values()), 2), "by_op_type": top(by_type, 10), "top_ops": top(by_name, 12)}
