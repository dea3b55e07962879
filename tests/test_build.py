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


@pytest.mark.parametrize("built", ["tiny_work", "tiny_work_short_windows"])
def test_windows_longer_than_the_log_before_a_row_are_measured_warned_and_recorded(built, tiny_logs, request):
    """The tiny world's 12 days are shorter than the default windows (365, 30 and 30 days): every row counted fewer
    days than serving will. Its short-window build's counter windows (personal 2 days, popularity 3) are whole."""
    import numpy as np
    import pandas as pd

    from dropdown_rank.build import window_coverage
    from dropdown_rank.logs.schema import DAY
    from dropdown_rank.workdir import read_samples

    work = Work.open(request.getfixturevalue(built))
    first_day = min(int(pd.read_parquet(tiny_logs / name, columns=["ts"])["ts"].min()) for name in ("events.parquet", "impressions.parquet")) // DAY * DAY
    config = BuildConfig(**{k: v for k, v in work.config.items() if k not in ("split", "samples", "graph")},
                         split=SplitConfig(**work.config["split"]), samples=build_module.SampleConfig(**work.config["samples"]),
                         graph=build_module.GraphConfig(**work.config["graph"]))
    said = []
    assert window_coverage(work.samples_dir, work.split, first_day, config, said.append) == work.windows  # what build.json holds
    windows = work.windows
    assert windows["log_first_day"] == pd.Timestamp(first_day, unit="s").strftime("%Y-%m-%d")
    for name, days, start in (("personal_days", config.samples.personal_days, first_day),
                              ("popularity_days", config.samples.popularity_days, first_day),
                              ("graph_window_days", config.graph.window_days, work.split.train_start)):
        ts = {split: read_samples(work.samples_dir, split, columns=["request_ts"])["request_ts"].to_numpy() for split in ("train", "valid", "test")}
        complete_from = start + int(days * DAY)
        assert windows[name]["truncated_share"] == {split: round(float(np.mean(t < complete_from)), 4) for split, t in ts.items()}, name
    counters = [windows[name]["truncated_share"][split] for name in ("personal_days", "popularity_days") for split in ("train", "test")]
    # the default windows cut every row; 2 and 3 days are whole after the 3 warm-up days; the graph's 30 days never are
    assert counters == ([1.0] * 4 if built == "tiny_work" else [0.0] * 4)
    assert windows["graph_window_days"]["truncated_share"] == {"train": 1.0, "valid": 1.0, "test": 1.0}
    assert len(said) == 1 and said[0].startswith("build: WARNING: windows longer than the log before the training rows: ")
    assert ("personal-days 365 (whole from" in said[0]) == (built == "tiny_work") and "graph-window-days 30 (whole from" in said[0]
