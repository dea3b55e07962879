"""SIGKILL at random times: the next run recovers or refuses clearly, and no earlier good artifact is damaged."""
import json
import random
import signal
import subprocess
import sys
import time

import pytest

from dropdown_rank.build import Work
from dropdown_rank.build import fingerprint as build_fingerprint
from dropdown_rank.cli import main

pytestmark = pytest.mark.slow


def run_time(command) -> float:
    """Seconds an uninterrupted run of ``command`` takes here, in a child process as the killed runs are, so that kills
    can land inside them."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dropdown_rank.cli", *command], capture_output=True, check=True, timeout=600)
    return time.perf_counter() - started


def killed_after(command, seconds):
    process = subprocess.Popen([sys.executable, "-m", "dropdown_rank.cli", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(seconds)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=300)
    return process.returncode


def test_a_build_killed_at_random_times_leaves_a_whole_work_directory(tiny_logs, tmp_path):
    work = tmp_path / "work"
    first = ["build", "--logs", str(tiny_logs), "--out", str(work), "--valid-days", "2", "--test-days", "2"]
    second = first[:-4] + ["--valid-days", "3", "--test-days", "2"]
    assert main(second) == 0
    fingerprint = {3: Work.open(work).fingerprint}
    assert main(first) == 0
    fingerprint[2] = Work.open(work).fingerprint
    duration = run_time(second)
    assert main(first) == 0
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        kills += killed_after(second, rng.uniform(0.2, 0.9) * duration) == -signal.SIGKILL
        if work.exists():  # the previous build, or the new one, complete and consistent
            valid_days = json.loads((work / "build.json").read_text())["config"]["split"]["valid_days"]
            assert Work.open(work).fingerprint == fingerprint[valid_days] == build_fingerprint(work)  # recomputed from the files
        else:  # killed between the two renames of the swap
            assert (tmp_path / ".work.previous" / "build.json").exists()
        assert main(second) == 0 and Work.open(work).fingerprint == fingerprint[3]
        assert main(first) == 0
    assert kills >= 2  # most kills landed while the build was running


def test_a_training_run_killed_at_random_times_resumes_to_the_uninterrupted_result(tiny_work, tmp_path):
    command = ["train", "--data", str(tiny_work), "--model", "base", "--epochs", "3", "--batch-size", "512", "--patience", "5",
               "--seed", "11"]
    duration = run_time(command + ["--out", str(tmp_path / "reference")])  # the uninterrupted run is the reference
    reference = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    rng = random.Random(3)
    kills = 0
    for attempt in range(2):
        run = tmp_path / f"run{attempt}"
        kills += killed_after(command + ["--out", str(run)], rng.uniform(0.4, 0.9) * duration) == -signal.SIGKILL
        if not (run / "metrics.json").exists():  # killed before it finished: the same command resumes it
            assert main(command + ["--out", str(run)]) == 0
        resumed = json.loads((run / "metrics.json").read_text())
        assert round(resumed["test_auc"], 4) == round(reference["test_auc"], 4)
        assert resumed["val_auc_per_epoch"] == pytest.approx(reference["val_auc_per_epoch"], abs=1e-6)
    assert kills >= 1  # at least one kill landed mid-training
