"""The build's work directory: staged and swapped in whole, never a mix of two builds, never clobbering."""
import json

import pytest

import dropdown_rank.build as build_module
from dropdown_rank.build import BuildConfig, build
from dropdown_rank.workdir import Work, fingerprint
from dropdown_rank.split import SplitConfig

CONFIG = BuildConfig(split=SplitConfig(valid_days=2, test_days=2))


def quiet(*_args, **_kwargs):
    pass


def test_an_interrupted_rebuild_leaves_the_previous_build_whole(tiny_logs, tmp_path, monkeypatch):
    work_dir = tmp_path / "work"
    build(tiny_logs, work_dir, CONFIG, progress=quiet, progress_bar=False)
    before = Work.open(work_dir).fingerprint
    assert fingerprint(work_dir) == before
    files_before = sorted(p.relative_to(work_dir) for p in work_dir.rglob("*"))

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("killed while writing samples")

    monkeypatch.setattr(build_module, "build_samples", killed)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_logs, work_dir, BuildConfig(split=SplitConfig(valid_days=3, test_days=2)), progress=quiet, progress_bar=False)
    assert fingerprint(work_dir) == before  # recomputed from the files: vocab/graph of the new build did not leak in
    assert sorted(p.relative_to(work_dir) for p in work_dir.rglob("*")) == files_before
    assert json.loads((work_dir / "build.json").read_text())["config"]["split"]["valid_days"] == 2
    monkeypatch.undo()
    build(tiny_logs, work_dir, BuildConfig(split=SplitConfig(valid_days=3, test_days=2)), progress=quiet, progress_bar=False)
    assert Work.open(work_dir).fingerprint != before and not (tmp_path / ".work.building").exists()


def test_a_half_built_directory_is_reported_and_a_foreign_one_is_never_replaced(tiny_logs, tmp_path):
    staging = tmp_path / ".work.building"
    (staging / "vocab").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    with pytest.raises(FileNotFoundError, match="unfinished or was interrupted"):
        Work.open(tmp_path / "work")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "data.parquet").write_text("not yours")
    with pytest.raises(ValueError, match=r"holds what this tool did not write as a work directory \(data.parquet\)"):
        build(tiny_logs, foreign, CONFIG, progress=quiet, progress_bar=False)
    assert (foreign / "data.parquet").read_text() == "not yours"


def test_a_rebuild_never_deletes_what_the_build_did_not_write(tiny_logs, tmp_path):
    work_dir = tmp_path / "work"
    build(tiny_logs, work_dir, CONFIG, progress=quiet, progress_bar=False)
    (work_dir / "runs" / "base_20").mkdir(parents=True)
    (work_dir / "runs" / "base_20" / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match=r"did not write as a work directory \(runs\)"):
        build(tiny_logs, work_dir, CONFIG, progress=quiet, progress_bar=False)
    assert (work_dir / "runs" / "base_20" / "metrics.json").exists() and Work.open(work_dir)
