"""The AOL query log converts into the schema, with MPC impressions from earlier days only.

``tests/data/aol/users`` holds 95 query blocks (95 queries, 114 clicks) of the real 1,000-user
extract, copied unchanged from three users (954650: horse-racing sites; 1238962: Long Island horse
directories; 2623468: stock message boards; all of the first two users' blocks of 2006-03-01 to
2006-03-07, 21 of the third's), with prefixes shared within and across users (``bri``, ``yah``,
``li ``, ``ny ``, ``hea``). ``tests/data/aol/release/user-ct-sample.txt`` is hand-written in the original
release's tab-separated format: mixed case and repeated spaces, ``-``, a query without a click, a
query with two clicks (two rows), a bad time, a malformed row and a query shorter than the prefix.
The re-submission rule (a query repeating the user's previous one within ``resubmit_gap_minutes``
is an event, not a request) is checked on a hand-made log in both formats (``RESUBMIT``) and, against
a brute-force reading, on the fixture users (10 re-submissions within 30 minutes, 24 without limit).
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


def naive_resubmissions(queries: pd.DataFrame, gap_minutes) -> np.ndarray:
    """The re-submission rule, row by row: the same text as the user's previous query, at most
    ``gap_minutes`` later (0: never, None: no limit). ``queries`` in event order."""
    last, flags = {}, []
    for r in queries.itertuples():
        previous = last.get(r.user_id)
        flags.append(gap_minutes != 0 and previous is not None and previous[0] == r.id
                     and (gap_minutes is None or r.ts - previous[1] <= 60 * gap_minutes))
        last[r.user_id] = (r.id, r.ts)
    return np.array(flags, dtype=bool)


def naive_impressions(queries: pd.DataFrame, prefix_rule="chars", prefix_len=3, candidates=10,
                      popularity_days=None, unlisted="drop", resubmit_gap_minutes=0, same_day=False,
                      count_resubmissions=False) -> pd.DataFrame:
    """The reconstruction rule, by brute force: for each request, recount the earlier days' queries.
    Re-submissions are neither requests nor counted (unless ``count_resubmissions``, a wrong rule)."""
    queries = queries.sort_values(["ts", "user_id", "id"], kind="stable").reset_index(drop=True)
    resubmitted = naive_resubmissions(queries, resubmit_gap_minutes)
    counted_queries = queries if count_resubmissions else queries[~resubmitted].reset_index(drop=True)
    queries = queries[~resubmitted].reset_index(drop=True)
    first_seen = {}
    for i, text in enumerate(queries["id"]):
        first_seen.setdefault(text, i)
    day = (queries["ts"] // 86400).tolist()
    counted_day = (counted_queries["ts"] // 86400).tolist()
    rows = []
    for number, r in enumerate(queries.itertuples()):
        d = day[number]
        counted = collections.Counter(
            text for text, e in zip(counted_queries["id"], counted_day)
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
    default, ev_default, imp_default = convert(USERS, tmp_path / "default")
    # The re-submission rule off (every query event a request): the conversion before the rule existed.
    off = tmp_path / "off"
    summary, events, imp = convert(USERS, off, resubmit_gap_minutes=0)
    assert summary["options"]["resubmit_gap_minutes"] == 0 and summary["query_events_resubmitted"] == 0
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

    logs = load_logs(off)
    assert len(logs.events) == 209 and len(logs.impressions) == 39
    assert all(not r.skipped and not r.repaired for r in logs.reports)
    assert (off / "aol.json").exists()

    # The default (30 minutes): the same events; 10 of the 95 query events repeat the user's previous
    # query within 30 minutes and are not requests (85 requests, all counted).
    assert default["options"]["resubmit_gap_minutes"] == 30
    assert same_rows(ev_default, events)
    assert (default["query_events"], default["query_events_resubmitted"], default["requests"]) == (95, 10, 85)
    assert (default["requests_issued_in_list"], default["requests_issued_outside_list_but_counted"],
            default["requests_issued_not_counted_before"]) == (52, 0, 33)
    assert default["requests_kept"] + sum(default["requests_skipped"].values()) == default["requests"]
    assert default["requests_skipped"] == {"issued query not in the MPC list (unlisted='drop')": 33,
                                           "fewer than 2 candidates": 35}



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
    {"resubmit_gap_minutes": 0},
    {"resubmit_gap_minutes": 5, "unlisted": "insert"},
    {"resubmit_gap_minutes": None},
    {"resubmit_gap_minutes": None, "unlisted": "insert", "popularity_days": 2},
])
def test_impressions_equal_a_brute_force_reconstruction(tmp_path, options):
    """Fixture users plus the release file (short query ``li``, a prefix shorter than 3)."""
    src = tmp_path / "src"
    shutil.copytree(USERS, src)
    shutil.copy(RELEASE, src)
    summary, events, imp = convert(src, tmp_path / "out", **options)
    queries = events[events["kind"] == "query"][["user_id", "ts", "id"]]
    gap = options.get("resubmit_gap_minutes", 30)
    expected = naive_impressions(queries, **{"resubmit_gap_minutes": gap, **options})
    assert len(expected) > 0 and same_rows(imp, expected)
    assert summary["impressions"] == len(expected)
    resubmitted = naive_resubmissions(queries, gap)
    assert summary["query_events_resubmitted"] == resubmitted.sum() and summary["requests"] == len(queries) - resubmitted.sum()
    if gap != 0:
        # On this fixture the rule changes the requests, and re-submissions counted in the popularity
        # would change the lists: an implementation that ignored either would fail above.
        assert resubmitted.sum() > 0
        assert not same_rows(naive_impressions(queries, **{**options, "resubmit_gap_minutes": 0}), expected)
        if not options:
            assert not same_rows(naive_impressions(queries, count_resubmissions=True, **options), expected)
    # The same rule with the request day's own queries counted gives other lists on this fixture, so
    # an implementation leaking same-day popularity would fail the comparison above.
    assert not same_rows(naive_impressions(queries, same_day=True, **options), expected)


def test_insert_mode_puts_the_unlisted_issued_query_last(tmp_path):
    drop, _, imp_drop = convert(USERS, tmp_path / "drop")
    insert, events, imp = convert(USERS, tmp_path / "insert", unlisted="insert")
    assert insert["requests_kept"] == drop["requests_kept_if_insert"] == insert["requests_kept_if_insert"]
    assert drop["requests_kept"] == insert["requests_kept_if_drop"]
    assert insert["requests_kept"] == 23 and len(imp) == 56
    assert insert["requests_skipped"] == {"fewer than 2 candidates": 85 - 23}  # 95 query events, 10 re-submissions
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
    imps = {}
    for unlisted, gap in (("drop", 0), ("insert", 0), ("drop", 30), ("insert", 30)):
        name = f"{unlisted}-{gap}"
        release, ev_release, imp_release = convert(RELEASE, tmp_path / f"release-{name}", unlisted=unlisted,
                                                   resubmit_gap_minutes=gap)
        users, ev_users, imp_users = convert(twin, tmp_path / f"users-{name}", unlisted=unlisted, resubmit_gap_minutes=gap)
        assert same_rows(ev_release, ev_users) and same_rows(imp_release, imp_users)
        imps[name] = imp_release
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
            assert (summary["query_events_resubmitted"], summary["requests"]) == ((0, 7) if gap == 0 else (1, 6))
    # Rows: "Equibase   Entries" with two clicks (two rows) is one query; the same text without a
    # click 2 minutes later (a "next page") is another query event, a re-submission (not a request)
    # under the 30-minute rule; the "-" query's click is kept.
    assert release["lines_read"] == 12
    queries = ev_release[ev_release["kind"] == "query"]
    assert queries["id"].tolist() == ["equibase", "equibase entries", "equibase entries", "equibase", "li equine", "li",
                                      "li equine"]
    items = ev_release[ev_release["kind"] == "item"]
    assert items["id"].tolist() == ["http://www.equibase.com/", "http://www.equibase.com/", "http://www.drf.com/",
                                    "http://www.brisnet.com/", "http://www.liequine.com/", "http://www.liequine.com/"]
    assert items["ts"].iloc[1] - queries["ts"].iloc[1] == 1 and items["ts"].iloc[2] - queries["ts"].iloc[1] == 2
    # Rule off: 2006-03-03's "equibase" sees 2006-03-02's "equibase entries" (2 issues) above
    # "equibase" (1). Insertion also keeps "li" (2006-03-04): the list of earlier days' "li"
    # completions has one query, "li equine", and "li" is added after it.
    columns = ["request_id", "candidate", "position", "clicked"]
    assert imps["insert-0"][columns].values.tolist() == [
        ["aol000000003", "equibase entries", 0, 0], ["aol000000003", "equibase", 1, 1],
        ["aol000000005", "li equine", 0, 0], ["aol000000005", "li", 1, 1]]
    assert same_rows(imps["drop-0"], imps["insert-0"][imps["insert-0"]["request_id"] == "aol000000003"])
    # 30 minutes: the re-submitted "equibase entries" is no request (the numbers shift by one) and does
    # not count in the popularity: "equibase" and "equibase entries" have 1 issue each, and the tie
    # goes to the older one, "equibase".
    assert imps["insert-30"][columns].values.tolist() == [
        ["aol000000002", "equibase", 0, 1], ["aol000000002", "equibase entries", 1, 0],
        ["aol000000004", "li equine", 0, 0], ["aol000000004", "li", 1, 1]]
    assert load_logs(tmp_path / "release-insert-30").impressions["request_id"].nunique() == 2


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
                    {"popularity_days": 0}, {"resubmit_gap_minutes": -1}, {"resubmit_gap_minutes": float("nan")}):
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
    written = json.loads((tmp_path / "logs" / "aol.json").read_text())
    assert written["options"]["candidates"] == 5 and written["options"]["resubmit_gap_minutes"] == 30
    assert written["query_events_resubmitted"] == 10
    for value, recorded, resubmitted in (("0", 0, 0), ("none", None, 24), ("inf", None, 24), ("2.5", 2.5, 0)):
        out = tmp_path / f"logs-{value}"
        assert main(["aol", "--src", str(FIXTURE / "users"), "--out", str(out), "--resubmit-gap-minutes", value]) == 0
        written = json.loads((out / "aol.json").read_text())
        assert written["options"]["resubmit_gap_minutes"] == recorded and written["query_events_resubmitted"] == resubmitted
    with pytest.raises(SystemExit):
        main(["aol", "--src", str(FIXTURE / "users"), "--out", str(tmp_path / "bad"), "--resubmit-gap-minutes", "-5"])


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


# A hand-made log for the re-submission rule: (user, QueryTime, query). Letters name the rows.
RESUBMIT = [
    ("9", "2006-03-01 10:00:00", "abc one"),    # day 1: seeds the "abc" list (1 issue each, in this order)
    ("9", "2006-03-01 10:05:00", "abc two"),
    ("9", "2006-03-01 10:10:00", "abc three"),
    ("1", "2006-03-02 09:00:00", "abc one"),    # a: request
    ("1", "2006-03-02 09:10:00", "ABC  one"),   # b: re-submission of a (10 min; same text once normalized)
    ("1", "2006-03-02 10:00:00", "abc one"),    # c: request, 50 min after b (beyond 30; a re-submission with no limit)
    ("1", "2006-03-02 10:20:00", "abc one"),    # d: re-submission of c (20 min)
    ("1", "2006-03-02 10:45:00", "abc one"),    # e: re-submission of d (25 min), though 45 min after the request c
    ("1", "2006-03-02 11:00:00", "abc two"),    # f: request
    ("1", "2006-03-02 11:05:00", "abc one"),    # g: request: A, B, A
    ("2", "2006-03-02 09:05:00", "abc one"),    # h: request: the log's previous query is user 1's a, not user 2's
    ("2", "2006-03-02 23:50:00", "abc two"),    # i: request
    ("2", "2006-03-03 00:05:00", "abc two"),    # j: re-submission of i, across midnight
    ("2", "2006-03-03 00:10:00", "-"),          #    skipped (not an event): does not break the run
    ("2", "2006-03-03 00:15:00", "abc two"),    # l: re-submission of j
    ("2", "2006-03-03 00:45:00", "abc two"),    # m: re-submission of l, exactly 30 min later
    ("2", "2006-03-03 01:15:01", "abc two"),    # n: request, 30 min 1 s after m (a re-submission with no limit)
    ("3", "2006-03-02 12:00:00", "abc two"),    # user 3: "abc two" typed 3 times, never twice in a row
    ("3", "2006-03-02 12:01:00", "xyz"),
    ("3", "2006-03-02 12:02:00", "abc two"),
    ("3", "2006-03-02 12:03:00", "xyz"),
    ("3", "2006-03-02 12:04:00", "abc two"),
]
# Requests under the 30-minute rule (user, time): every query event but b, d, e, j, l, m.
RESUBMITTED_30 = {("1", "2006-03-02 09:10:00"), ("1", "2006-03-02 10:20:00"), ("1", "2006-03-02 10:45:00"),
                  ("2", "2006-03-03 00:05:00"), ("2", "2006-03-03 00:15:00"), ("2", "2006-03-03 00:45:00")}
RESUBMITTED_NO_LIMIT = RESUBMITTED_30 | {("1", "2006-03-02 10:00:00"), ("2", "2006-03-03 01:15:01")}


def write_resubmit_log(folder: Path) -> tuple[Path, Path]:
    """RESUBMIT in both formats: per-user files and one release file."""
    users, release = folder / "users", folder / "release.txt"
    users.mkdir(parents=True)
    for user in sorted({u for u, _, _ in RESUBMIT}):
        (users / f"{user}.txt").write_text("".join(f"{q}\t{t}\n\n" for u, t, q in RESUBMIT if u == user))
    release.write_text("AnonID\tQuery\tQueryTime\tItemRank\tClickURL\n" + "".join(
        f"{u}\t{q}\t{t}\t\t\n" for u, t, q in sorted(RESUBMIT, key=lambda r: (r[0], r[1]))))
    return users, release


def epoch(text: str) -> int:
    return int((pd.Timestamp(text, tz="UTC") - pd.Timestamp(0, tz="UTC")).total_seconds())


def requests_of(imp: pd.DataFrame) -> set:
    return set(zip(imp["user_id"], imp["ts"]))


def test_a_resubmission_within_the_gap_is_an_event_but_not_a_request(tmp_path):
    users, release = write_resubmit_log(tmp_path / "src")
    typed = [(u, epoch(t), " ".join(q.lower().split())) for u, t, q in RESUBMIT if q != "-"]
    messages = []
    summary, events, imp = convert(users, tmp_path / "users-30")  # the default: 30 minutes
    for source, out in ((users, "users-30-again"), (release, "release-30")):
        messages.clear()
        again = convert_aol(source, tmp_path / out, chunk_rows=2, progress=messages.append)
        ev_again = pd.read_parquet(tmp_path / out / "events.parquet")
        imp_again = pd.read_parquet(tmp_path / out / "impressions.parquet")
        assert same_rows(ev_again, events) and same_rows(imp_again, imp)  # both read paths, any chunking
        assert again["query_events_resubmitted"] == 6
        assert "6 re-submitted query events not requests" in messages[-1]

    # Every query issued is an event, re-submissions included.
    queries = events[events["kind"] == "query"]
    assert sorted(zip(queries["user_id"], queries["ts"], queries["id"])) == sorted(typed)
    # Counted: 21 query events = 15 requests + 6 re-submissions; 10 requests kept, 5 skipped (the
    # first day's 3 and the 2 "xyz", whose lists are empty).
    assert (summary["query_events"], summary["query_events_resubmitted"], summary["requests"]) == (21, 6, 15)
    assert summary["requests_kept"] == 10 and sum(summary["requests_skipped"].values()) == 5
    written = json.loads((tmp_path / "users-30" / "aol.json").read_text())
    assert written["options"]["resubmit_gap_minutes"] == 30 and written["query_events_resubmitted"] == 6
    # No impression for a re-submission; every other request of days 2 and 3 has its list.
    expected = {(u, epoch(t)) for u, t, q in RESUBMIT if t >= "2006-03-02" and q.lower().startswith("abc")}
    resubmitted = {(u, epoch(t)) for u, t in RESUBMITTED_30}
    assert requests_of(imp) == expected - resubmitted and len(expected - resubmitted) == 10
    assert imp["request_id"].tolist()[::3] == [f"aol{n:09d}" for n in range(3, 15) if n not in (9, 11)]  # xyz: 9, 11
    # Re-submissions do not count in the popularity: on day 3, "abc two" (1 + 3 typed by user 3 + f + i
    # = 6 issues) ranks above "abc one" (1 + a, c, g, h = 5; 8 if b, d, e counted).
    last = imp[imp["ts"] == epoch("2006-03-03 01:15:01")]
    assert last[["candidate", "position", "clicked"]].values.tolist() == [
        ["abc two", 0, 1], ["abc one", 1, 0], ["abc three", 2, 0]]


def test_resubmission_gap_off_and_without_limit(tmp_path):
    users, release = write_resubmit_log(tmp_path / "src")
    on, ev_on, imp_on = convert(users, tmp_path / "on")
    off, ev_off, imp_off = convert(release, tmp_path / "off", resubmit_gap_minutes=0)
    nolimit, ev_nolimit, imp_nolimit = convert(users, tmp_path / "nolimit", resubmit_gap_minutes=None)
    assert same_rows(ev_off, ev_on) and same_rows(ev_nolimit, ev_on)  # the events never change
    # Off: every query event is a request, as before the rule; the impressions are the old rule's.
    assert off["options"]["resubmit_gap_minutes"] == 0
    assert (off["query_events_resubmitted"], off["requests"]) == (0, 21)
    queries = ev_off[ev_off["kind"] == "query"][["user_id", "ts", "id"]]
    assert same_rows(imp_off, naive_impressions(queries))
    all_typed = {(u, epoch(t)) for u, t, q in RESUBMIT if t >= "2006-03-02" and q.lower().startswith("abc")}
    assert requests_of(imp_off) == all_typed
    # No limit: c (50 min after b) and n (30 min 1 s after m) are re-submissions too.
    assert nolimit["options"]["resubmit_gap_minutes"] is None
    assert (nolimit["query_events_resubmitted"], nolimit["requests"]) == (8, 13)
    assert requests_of(imp_nolimit) == all_typed - {(u, epoch(t)) for u, t in RESUBMITTED_NO_LIMIT}
    for gap, imp in ((30, imp_on), (None, imp_nolimit)):
        assert same_rows(imp, naive_impressions(queries, resubmit_gap_minutes=gap))
    # 10 minutes: b and l (10 min after a and j) are re-submissions; d, e, j (15 min after i), m are requests.
    ten, _, imp_ten = convert(users, tmp_path / "ten", resubmit_gap_minutes=10)
    assert ten["query_events_resubmitted"] == 2
    assert requests_of(imp_ten) == all_typed - {(u, epoch(t)) for u, t in (("1", "2006-03-02 09:10:00"),
                                                                            ("2", "2006-03-03 00:15:00"))}
    assert same_rows(imp_ten, naive_impressions(queries, resubmit_gap_minutes=10))
