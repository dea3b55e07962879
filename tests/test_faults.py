"""SIGKILL at random times: the next run recovers or refuses clearly, and no earlier good artifact is damaged."""
import json
import random
import signal
import time
from pathlib import Path

import pytest

from dropdown_rank.workdir import Work
from dropdown_rank.workdir import fingerprint as build_fingerprint
from dropdown_rank.cli import main

import children

pytestmark = pytest.mark.slow


def wait_for(marker: Path, process: children.Child, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists() and process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"{marker} did not appear within {timeout:.0f} s")
        time.sleep(0.01)


def killed_after(command, marker: Path, seconds: float) -> int:
    """The exit code of a child run of ``command`` sent SIGKILL ``seconds`` after ``marker`` appears."""
    process = children.Child(["-m", "dropdown_rank.cli", *command])
    wait_for(marker, process)
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
    # Kills land at a random stage of the build (the staging directory, then each part it writes, in order), a random
    # moment after the stage starts: timed by the build's own progress, which another process's load cannot shift.
    staging = tmp_path / ".work.building"
    stages = [staging, staging / "vocab", staging / "graph", staging / "samples"]
    rng = random.Random(5)
    kills = 0
    for attempt in range(8):  # at least 4 random times, more until 2 kills landed while the build ran
        if attempt >= 4 and kills >= 2:
            break
        killed = killed_after(second, rng.choice(stages), rng.uniform(0.0, 0.3)) == -signal.SIGKILL
        kills += killed and (staging.exists() or (tmp_path / ".work.previous").exists())  # left unfinished work behind
        if work.exists():  # the previous build, or the new one, complete and consistent
            valid_days = json.loads((work / "build.json").read_text())["config"]["split"]["valid_days"]
            assert Work.open(work).fingerprint == fingerprint[valid_days] == build_fingerprint(work)  # recomputed from the files
        else:  # killed between the two renames of the swap
            assert (tmp_path / ".work.previous" / "build.json").exists()
        assert main(second) == 0 and Work.open(work).fingerprint == fingerprint[3]
        assert main(first) == 0
    assert kills >= 2


def test_a_training_run_killed_at_random_times_resumes_to_the_uninterrupted_result(tiny_work, base_run, tmp_path):
    command = ["train", "--data", str(tiny_work), "--model", "base", "--epochs", "3", "--batch-size", "512", "--patience", "5",
               "--seed", "11"]
    # The uninterrupted run is the reference, trained once for the session (conftest.QUICK: this command's settings). A
    # run writes run.json when its work starts: kills are timed from that moment, so the start-up before it, which
    # another process's load stretches, is not part of the time (what remains can still stretch: a kill that misses is
    # retried, and only a kill that interrupted the work counts).
    reference_run, reference = base_run
    duration = (reference_run / "metrics.json").stat().st_mtime - (reference_run / "run.json").stat().st_mtime
    rng = random.Random(3)
    kills = 0
    for attempt in range(4):  # at least 2 random times, more until one kill landed mid-training
        if attempt >= 2 and kills >= 1:
            break
        run = tmp_path / f"run{attempt}"
        killed = killed_after(command + ["--out", str(run)], run / "run.json", rng.uniform(0.2, 0.9) * duration) == -signal.SIGKILL
        kills += killed and not (run / "metrics.json").exists()  # killed before the run finished
        if not (run / "metrics.json").exists():  # killed before it finished: the same command resumes it
            assert main(command + ["--out", str(run)]) == 0
        resumed = json.loads((run / "metrics.json").read_text())
        assert all(json.loads((run / "config.json").read_text())[part] == json.loads((reference_run / "config.json").read_text())[part]
                   for part in ("model", "train", "work_fingerprint")), "the command trains what the reference trained"
        assert round(resumed["test_auc"], 4) == round(reference["test_auc"], 4)
        assert resumed["val_auc_per_epoch"] == pytest.approx(reference["val_auc_per_epoch"], abs=1e-6)
    assert kills >= 1
