"""The AOL query log converts into the schema, with MPC impressions from earlier days only.

``tests/data/aol/users`` holds 95 query blocks (95 queries, 114 clicks) of the real 1,000-user
extract, copied unchanged from three users (954650: horse-racing sites; 1238962: Long Island horse
directories; 2623468: stock message boards; all of the first two users' blocks of 2006-03-01 to
2006-03-07, 21 of the third's), with prefixes shared within and across users (``bri``, ``yah``,
``li ``, ``ny ``, ``hea``). ``tests/data/aol/release/user-ct-sample.txt`` is hand-written in the original
release's tab-separated format: mixed case and repeated spaces, ``-``, a query without a click, a
query with two clicks (two rows), a bad time, a malformed row and a query shorter than the prefix.
Nothing here reads ``../shared``.
"""
import collections
import json
import gzip
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dropdown_rank.logs.aol import convert_aol, normalize_url
from dropdown_rank.logs.schema import load_logs

FIXTURE = Path(__file__).resolve().parent / "data" / "aol"
USERS = FIXTURE / "users"
RELEASE = FIXTURE / "release" / "user-ct-sample.txt"

# The per-user twin of RELEASE: the same rows in the extract's format (URLs as the extract writes
# them for 100, as the release does for 101).
TWIN = {
    "100.txt": "equibase\t2006-03-02 08:00:00\nhttp://www.equibase.com/\n\n"
               "Equibase   Entries\t2006-03-02 08:05:00\nhttp://www.EQUIBASE.com\nhttp://www.drf.com\n\n"
               "equibase entries\t2006-03-02 08:07:10\n\n"
               "-\t2006-03-02 08:09:00\nhttp://www.brisnet.com\n\n"
               "equibase\t2006-03-03 07:30:00\n\n"
               "equibase\t2006-03-33 07:31:00\nhttp://www.equibase.com\n\n",
    "101.txt": "li equine\t2006-03-03 09:00:00\nhttp://www.liequine.com\n\n"
               "LI\t2006-03-04 10:00:00\nhttp://www.liequine.com\n\n"
               "li equine\t2006-03-04 10:02:00\n\n",
}


def quiet(*_args, **_kwargs):
    pass


def convert(src, out, **options):
    summary = convert_aol(src, out, progress=quiet, **options)
    events = pd.read_parquet(Path(out) / "events.parquet")
    impressions = pd.read_parquet(Path(out) / "impressions.parquet")
    return summary, events, impressions


def parse_user_files(folder: Path):
    """An independent reading of the extract's format: (queries, clicks), normalized."""
    queries, clicks = [], []
    for path in sorted(folder.glob("*.txt")):
        for block in path.read_text().split("\n\n"):
            if not block.strip():
                continue
            head, *urls = block.split("\n")
            text, when = head.rsplit("\t", 1)
            ts = int((pd.Timestamp(when, tz="UTC") - pd.Timestamp(0, tz="UTC")).total_seconds())
            queries.append((path.stem, ts, " ".join(text.lower().split())))
            clicks += [(path.stem, ts + k, url) for k, url in enumerate(urls, 1)]
    return (pd.DataFrame(queries, columns=["user_id", "ts", "id"]),
            pd.DataFrame(clicks, columns=["user_id", "ts", "id"]))


def naive_impressions(queries: pd.DataFrame, prefix_rule="chars", prefix_len=3, candidates=10,
                      popularity_days=None, unlisted="drop", same_day=False) -> pd.DataFrame:
    """The reconstruction rule, by brute force: for each request, recount the earlier days' queries."""
    queries = queries.sort_values(["ts", "user_id", "id"], kind="stable").reset_index(drop=True)
    first_seen = {}
    for i, text in enumerate(queries["id"]):
        first_seen.setdefault(text, i)
    day = (queries["ts"] // 86400).tolist()
    rows = []
    for number, r in enumerate(queries.itertuples()):
        d = day[number]
        counted = collections.Counter(
            text for text, e in zip(queries["id"], day)
            if (e <= d if same_day else e < d) and (popularity_days is None or e >= d - popularity_days))
        prefix = r.id[:prefix_len] if prefix_rule == "chars" else r.id.split(" ")[0][:prefix_len]
        mpc = sorted((c for c in counted if c.startswith(prefix)), key=lambda c: (-counted[c], first_seen[c]))[:candidates]
        if r.id in mpc:
            shown = mpc
        elif unlisted == "insert":
            shown = mpc[:candidates - 1] + [r.id]
        else:
            continue
        if len(shown) < 2:
            continue
        rows += [(f"aol{number:09d}", r.user_id, r.ts, prefix, c, p, int(c == r.id)) for p, c in enumerate(shown)]
    return pd.DataFrame(rows, columns=["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"])


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    a = a.astype({c: object for c in a.columns if a[c].dtype.kind not in "iu"}).reset_index(drop=True)
    b = b.astype({c: object for c in b.columns if b[c].dtype.kind not in "iu"}).reset_index(drop=True)
    return list(a.columns) == list(b.columns) and len(a) == len(b) and all(
        (a[c].to_numpy() == b[c].to_numpy()).all() for c in a.columns)


def test_checked_in_extract_rows_convert_with_exact_counts(tmp_path):
    summary, events, imp = convert(USERS, tmp_path)
    assert summary["files"] == {"users": 3, "release": 0} and summary["files_skipped"] == []
    assert (summary["lines_read"], summary["queries_read"], summary["clicks_read"]) == (304, 95, 114)
    assert summary["rows_skipped"] == {} and summary["clicks_of_empty_queries_kept"] == 0
    assert (summary["events"], summary["query_events"], summary["item_events"]) == (209, 95, 114)
    assert (summary["days"], summary["first_day"], summary["last_day"]) == (7, "2006-03-01", "2006-03-07")
    # 95 requests. 57 issued queries are in their MPC list (for 40 of them, as its only candidate),
    # 38 were never issued on an earlier day (10 of them are the first day's requests).
    assert summary["requests"] == 95
    assert (summary["requests_issued_in_list"], summary["requests_issued_outside_list_but_counted"],
            summary["requests_issued_not_counted_before"]) == (57, 0, 38)
    assert summary["requests_kept"] == summary["requests_kept_if_drop"] == 17
    assert summary["requests_kept_if_insert"] == 23
    assert summary["requests_skipped"] == {"issued query not in the MPC list (unlisted='drop')": 38,
                                           "fewer than 2 candidates": 40}
    assert summary["impressions"] == len(imp) == 39
    assert summary["clicked_position_counts"] == {"0": 12, "1": 5}
    assert len(events) == 209 and imp["request_id"].nunique() == 17

    # Events are the raw rows: one query per block at its time, the k-th click at time + k s.
    queries, clicks = parse_user_files(USERS)
    key = ["user_id", "ts", "id"]
    as_set = lambda frame: sorted(map(tuple, frame[key].astype(object).to_numpy().tolist()))  # noqa: E731
    assert as_set(events[events["kind"] == "query"]) == as_set(queries)
    assert as_set(events[events["kind"] == "item"]) == as_set(clicks)
    assert (np.diff(events["ts"].to_numpy()) >= 0).all()  # written in time order

    logs = load_logs(tmp_path)
    assert len(logs.events) == 209 and len(logs.impressions) == 39
    assert all(not r.skipped and not r.repaired for r in logs.reports)
    assert (tmp_path / "aol.json").exists()



def test_each_request_shows_earlier_days_queries_and_clicks_the_issued_one(tmp_path):
    _, events, imp = convert(USERS, tmp_path)
    queries = events[events["kind"] == "query"]
    # One click per request, on the query that user issued at that second; positions 0..n-1.
    assert (imp.groupby("request_id")["clicked"].sum() == 1).all()
    clicked = imp[imp["clicked"] == 1]
    issued = set(zip(queries["user_id"], queries["ts"], queries["id"]))
    assert all(row in issued for row in zip(clicked["user_id"], clicked["ts"], clicked["candidate"]))
    positions = imp.groupby("request_id")["position"].agg(["min", "max", "size", "nunique"])
    assert (positions["min"] == 0).all() and (positions["max"] == positions["size"] - 1).all()
    assert (positions["nunique"] == positions["size"]).all() and (positions["size"] >= 2).all()
    assert (clicked["prefix"] == clicked["candidate"].str[:3]).all()
    assert all(c.startswith(p) for c, p in zip(imp["candidate"], imp["prefix"]))
    # Every candidate (the clicked one too, under unlisted="drop") was issued on an earlier day.
    first_day = (queries["ts"] // 86400).groupby(queries["id"]).min()
    assert (first_day.reindex(imp["candidate"]).to_numpy() < (imp["ts"] // 86400).to_numpy()).all()
    # The MPC order is informative but not trivial: the issued query is not always on top.
    assert 0 < (clicked["position"] > 0).sum() < len(clicked)


@pytest.mark.parametrize("options", [
    {},
    {"unlisted": "insert"},
    {"popularity_days": 1},
    {"popularity_days": 2, "unlisted": "insert"},
    {"candidates": 2},
    {"prefix_len": 1},
    {"prefix_rule": "word", "prefix_len": 4},
    {"prefix_rule": "word", "prefix_len": 2, "unlisted": "insert", "candidates": 3},
])
def test_impressions_equal_a_brute_force_reconstruction(tmp_path, options):
    """Fixture users plus the release file (short query ``li``, a prefix shorter than 3)."""
    src = tmp_path / "src"
    shutil.copytree(USERS, src)
    shutil.copy(RELEASE, src)
    summary, events, imp = convert(src, tmp_path / "out", **options)
    queries = events[events["kind"] == "query"][["user_id", "ts", "id"]]
    expected = naive_impressions(queries, **options)
    assert len(expected) > 0 and same_rows(imp, expected)
    assert summary["impressions"] == len(expected)
    # The same rule with the request day's own queries counted gives other lists on this fixture, so
    # an implementation leaking same-day popularity would fail the comparison above.
    assert not same_rows(naive_impressions(queries, same_day=True, **options), expected)


def test_insert_mode_puts_the_unlisted_issued_query_last(tmp_path):
    drop, _, imp_drop = convert(USERS, tmp_path / "drop")
    insert, events, imp = convert(USERS, tmp_path / "insert", unlisted="insert")
    assert insert["requests_kept"] == drop["requests_kept_if_insert"] == insert["requests_kept_if_insert"]
    assert drop["requests_kept"] == insert["requests_kept_if_drop"]
    assert insert["requests_kept"] == 23 and len(imp) == 56
    assert insert["requests_skipped"] == {"fewer than 2 candidates": 95 - 23}
    clicked = imp[imp["clicked"] == 1].set_index("request_id")
    size = imp.groupby("request_id").size()
    listed = set(imp_drop["request_id"])
    unlisted = clicked.index[~clicked.index.isin(listed)]
    assert len(unlisted) == insert["requests_kept"] - drop["requests_kept"] > 0
    assert (clicked.loc[unlisted, "position"] == size[unlisted] - 1).all()
    # Requests kept in both modes are identical.
    assert same_rows(imp[imp["request_id"].isin(listed)], imp_drop)


def test_release_format_gives_the_same_logs_as_the_per_user_format(tmp_path):
    twin = tmp_path / "twin"
    twin.mkdir()
    for name, text in TWIN.items():
        (twin / name).write_text(text)
    for unlisted in ("drop", "insert"):
        release, ev_release, imp_release = convert(RELEASE, tmp_path / f"release-{unlisted}", unlisted=unlisted)
        users, ev_users, imp_users = convert(twin, tmp_path / f"users-{unlisted}", unlisted=unlisted)
        assert same_rows(ev_release, ev_users) and same_rows(imp_release, imp_users)
        assert release["files"] == {"users": 0, "release": 1} and users["files"] == {"users": 2, "release": 0}
        assert release["rows_skipped"] == {
            "row without 3 to 5 tab-separated fields or without AnonID": 1,
            "unparseable or out-of-range QueryTime": 1,
            "click of a query with an unparseable QueryTime": 1,
            "empty query ('-' or blank after normalization)": 1,
        }
        assert users["rows_skipped"] == {k: v for k, v in release["rows_skipped"].items() if not k.startswith("row without")}
        for summary in (release, users):
            assert (summary["queries_read"], summary["clicks_read"], summary["events"]) == (9, 7, 13)
            assert summary["clicks_of_empty_queries_kept"] == 1 and summary["queries_rewritten_by_normalization"] == 2
    # Rows: "Equibase   Entries" with two clicks (two rows) is one query; the same text without a
    # click 2 minutes later (a "next page") is another; the "-" query's click is kept.
    assert release["lines_read"] == 12
    queries = ev_release[ev_release["kind"] == "query"]
    assert queries["id"].tolist() == ["equibase", "equibase entries", "equibase entries", "equibase", "li equine", "li",
                                      "li equine"]
    items = ev_release[ev_release["kind"] == "item"]
    assert items["id"].tolist() == ["http://www.equibase.com/", "http://www.equibase.com/", "http://www.drf.com/",
                                    "http://www.brisnet.com/", "http://www.liequine.com/", "http://www.liequine.com/"]
    assert items["ts"].iloc[1] - queries["ts"].iloc[1] == 1 and items["ts"].iloc[2] - queries["ts"].iloc[1] == 2
    # 2006-03-03's "equibase" sees 2006-03-02's "equibase entries" (2 issues) above "equibase" (1).
    # Insertion also keeps "li" (2006-03-04): the list of earlier days' "li" completions has one
    # query, "li equine", and "li" is added after it.
    assert imp_release[["candidate", "position", "clicked"]].values.tolist() == [
        ["equibase entries", 0, 0], ["equibase", 1, 1], ["li equine", 0, 0], ["li", 1, 1]]
    assert load_logs(tmp_path / "release-insert").impressions["request_id"].nunique() == 2


def test_tar_gz_gzip_mixed_directory_and_small_chunks_give_the_same_logs(tmp_path):
    _, ev, imp = convert(USERS, tmp_path / "dir")
    archive = tmp_path / "users.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(USERS, arcname="aol-dev-users")
    _, ev_tar, imp_tar = convert(archive, tmp_path / "tar")
    assert same_rows(ev, ev_tar) and same_rows(imp, imp_tar)
    _, ev_chunks, imp_chunks = convert(USERS, tmp_path / "chunks", chunk_rows=7)
    assert same_rows(ev, ev_chunks) and same_rows(imp, imp_chunks)

    gz = tmp_path / "gz" / "user-ct-test-collection-01.txt.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(RELEASE.read_bytes()))
    (gz.parent / "U500k_README.txt").write_text("500k User Session Collection\n")
    summary, ev_gz, imp_gz = convert(gz.parent, tmp_path / "gz-out", unlisted="insert")
    _, ev_plain, imp_plain = convert(RELEASE, tmp_path / "plain", unlisted="insert")
    assert same_rows(ev_gz, ev_plain) and same_rows(imp_gz, imp_plain)
    assert summary["files_skipped"] == [f"{gz.parent / 'U500k_README.txt'} (not an AOL log)"]

    # Both formats in one directory, detected per file.
    summary, _, _ = convert(FIXTURE, tmp_path / "mixed")
    assert summary["files"] == {"users": 3, "release": 1} and summary["query_events"] == 95 + 7
    load_logs(tmp_path / "mixed")


def test_url_normalization_is_minimal():
    assert normalize_url([" http://www.Google.COM ", "HTTP://A.b/Path/X", "http://x.com?q=A", "www.Foo.com/A",
                          "http://www.google.com/"]).tolist() == [
        "http://www.google.com/", "http://a.b/Path/X", "http://x.com/?q=A", "www.foo.com/A", "http://www.google.com/"]


def test_bad_options_and_sources_are_refused(tmp_path):
    for options in ({"prefix_rule": "random"}, {"unlisted": "keep"}, {"candidates": 1}, {"prefix_len": 0},
                    {"popularity_days": 0}):
        with pytest.raises(ValueError):
            convert_aol(USERS, tmp_path / "out", progress=quiet, **options)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here\n")
    with pytest.raises(ValueError, match="no AOL log file"):
        convert_aol(tmp_path / "empty", tmp_path / "out", progress=quiet)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.building").exists()  # no spool left behind


def test_the_cli_converts_the_fixture(tmp_path):
    from dropdown_rank.cli import main

    assert main(["aol", "--src", str(FIXTURE / "users"), "--out", str(tmp_path / "logs"), "--candidates", "5"]) == 0
    assert (tmp_path / "logs" / "events.parquet").exists() and (tmp_path / "logs" / "impressions.parquet").exists()
    assert json.loads((tmp_path / "logs" / "aol.json").read_text())["options"]["candidates"] == 5


def test_conversion_is_staged_and_never_replaces_a_foreign_directory(tmp_path, monkeypatch):
    import dropdown_rank.logs.aol as aol

    out = tmp_path / "logs"
    convert_aol(FIXTURE / "users", out, candidates=5, progress=lambda *a: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"events.parquet", "impressions.parquet", "aol.json"}

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("killed in the second pass")

    monkeypatch.setattr(aol, "_second_pass", killed)
    with pytest.raises(KeyboardInterrupt):
        convert_aol(FIXTURE / "users", out, candidates=3, progress=lambda *a: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous conversion, whole
    monkeypatch.undo()
    convert_aol(FIXTURE / "users", out, candidates=3, progress=lambda *a: None)
    assert json.loads((out / "aol.json").read_text())["options"]["candidates"] == 3
    assert not (tmp_path / ".logs.building").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="holds what this tool did not write"):
        convert_aol(FIXTURE / "users", mine, progress=lambda *a: None)
    assert (mine / "notes.txt").read_text() == "keep"
