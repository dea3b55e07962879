"""Validation: one test per kind of bad input, each asserting the message; repairs and skips counted."""
import json

import numpy as np
import pandas as pd
import pytest

from dropdown_rank.logs.schema import MAX_ID_CHARS, WHITESPACE, SchemaError, load_logs, validate_frame

T0 = 1767225600  # 2026-01-01T00:00:00Z


def events(**override):
    frame = pd.DataFrame({
        "user_id": ["u1", "u2", "u1"],
        "ts": [str(T0 + 5), "2026-01-01T00:00:00Z", str(T0 + 10)],
        "kind": ["query", "item", "query"],
        "id": ["red shoes", "sku1", "blue shoes"],
    })
    for column, (row, value) in override.items():
        frame.loc[row, column] = value
    return frame


def impressions(**override):
    frame = pd.DataFrame({
        "request_id": ["r1", "r1", "r2"],
        "user_id": ["u1", "u1", "u2"],
        "ts": [T0, T0, T0 + 60],
        "prefix": ["re", "re", ""],
        "candidate": ["red shoes", "red hat", "blue shoes"],
        "position": [0, 1, 0],
        "clicked": [1, 0, 0],
    })
    for column, (row, value) in override.items():
        frame.loc[row, column] = value
    return frame


def test_valid_input_is_typed_and_unsorted_input_is_fine():
    clean, report = validate_frame("events", events().iloc[::-1], "events.csv")
    assert clean["ts"].dtype == np.int64
    assert sorted(clean["ts"]) == [T0, T0 + 5, T0 + 10]
    assert report.rows_read == report.rows_kept == 3
    assert not report.skipped


def test_missing_column_names_file_and_column():
    with pytest.raises(SchemaError, match=r"events.csv, column 'kind': missing column"):
        validate_frame("events", events().drop(columns="kind"), "events.csv")


def test_null_id_names_the_row():
    with pytest.raises(SchemaError, match=r"events.csv, column 'id': null or blank id: 1 bad row\(s\); first: row 2 \(''\)"):
        validate_frame("events", events(id=(1, "")), "events.csv")


def test_text_longer_than_serving_takes_is_a_bad_row_shown_cut():
    longest = "q" * MAX_ID_CHARS
    validate_frame("impressions", impressions(candidate=(1, longest), prefix=(1, longest)), "impressions.csv")  # the bound itself
    with pytest.raises(SchemaError, match=r"impressions.csv, column 'candidate': text longer than 1,000 characters: 1 bad "
                                          r"row\(s\); first: row 2 \('qqq.*\.\.\. \(1,000,000 characters\)\)$"):
        validate_frame("impressions", impressions(candidate=(1, "q" * 10 ** 6)), "impressions.csv")
    report = validate_frame("events", events(id=(0, "x" * (MAX_ID_CHARS + 1))), "events.csv", bad_rows="skip")[1]
    assert report.skipped == {"id: text longer than 1,000 characters": 1}


def test_ids_are_kept_verbatim_neither_case_folded_nor_stripped():
    clean, _ = validate_frame("events", events(id=(0, " Red Shoes"), user_id=(1, "U2 ")), "events.csv")
    assert clean["id"].tolist()[:1] == [" Red Shoes"] and "U2 " in clean["user_id"].tolist()


def test_null_id_in_parquet_style_none():
    with pytest.raises(SchemaError, match=r"column 'user_id': null or blank id.*row 3"):
        validate_frame("events", events(user_id=(2, None)), "events.parquet")


def test_unparseable_ts_shows_the_value():
    with pytest.raises(SchemaError, match=r"column 'ts': unparseable timestamp.*row 3 \('yesterday'\)"):
        validate_frame("events", events(ts=(2, "yesterday")), "events.csv")


def test_millisecond_ts_is_flagged():
    with pytest.raises(SchemaError, match=r"column 'ts': timestamp outside 1990..2100 \(milliseconds"):
        validate_frame("events", events(ts=(0, str(T0 * 1000))), "events.csv")


def test_negative_ts_is_not_called_milliseconds():
    with pytest.raises(SchemaError, match=r"column 'ts': negative timestamp: a time before 1970.*row 2 \('-5'\)") as error:
        validate_frame("events", events(ts=(1, "-5")), "events.csv")
    assert "milliseconds" not in str(error.value)
    with pytest.raises(SchemaError, match=r"column 'ts': timestamp before 1990 .*row 1 \('86400'\)") as error:
        validate_frame("events", events(ts=(0, "86400")), "events.csv")
    assert "milliseconds" not in str(error.value)


def test_fractional_seconds_are_truncated_and_counted_as_repairs():
    frame = events(ts=(0, str(T0 + 5.75)))
    frame.loc[1, "ts"] = "2026-01-01T00:00:00.250Z"
    clean, report = validate_frame("events", frame, "events.csv")
    assert sorted(clean["ts"]) == [T0, T0 + 5, T0 + 10]
    assert report.repaired == {"ts: fractional seconds truncated": 2}
    numeric, report = validate_frame("impressions", impressions().assign(ts=[T0 + 0.5, T0 + 0.5, T0 + 60.0]), "impressions.parquet")
    assert numeric["ts"].tolist() == [T0, T0, T0 + 60]
    assert report.repaired == {"ts: fractional seconds truncated": 2}
    assert "repaired 2 (ts: fractional seconds truncated)" in report.summary()


def test_unknown_kind():
    with pytest.raises(SchemaError, match=r"column 'kind': kind must be one of query, item.*row 1 \('click'\)"):
        validate_frame("events", events(kind=(0, "click")), "events.csv")


def test_clicked_outside_0_1():
    with pytest.raises(SchemaError, match=r"impressions.parquet, column 'clicked': value outside \{0, 1\}.*row 2 \(2\)"):
        validate_frame("impressions", impressions(clicked=(1, 2)), "impressions.parquet")


def test_wrong_type_position():
    frame = impressions().astype({"position": object})
    frame.loc[2, "position"] = "top"
    with pytest.raises(SchemaError, match=r"column 'position': wrong type: expected an integer.*row 3 \('top'\)"):
        validate_frame("impressions", frame, "impressions.csv")


def test_request_with_two_users_is_rejected():
    with pytest.raises(SchemaError, match=r"column 'request_id': one request_id has several user_id or ts values.*row 1"):
        validate_frame("impressions", impressions(user_id=(1, "u9")), "impressions.csv")


def test_conflicting_duplicate_impression():
    frame = pd.concat([impressions(), impressions().iloc[[0]].assign(position=5)], ignore_index=True)
    with pytest.raises(SchemaError, match=r"column 'candidate': the same \(request_id, candidate\) appears.*row 1"):
        validate_frame("impressions", frame, "impressions.csv")


def test_duplicates_and_repairs_are_counted_not_silent():
    frame = pd.concat([events(kind=(0, " Query")), events().iloc[[2]]], ignore_index=True)
    clean, report = validate_frame("events", frame, "events.csv")
    assert len(clean) == 3
    assert report.skipped == {"exact duplicate row": 1}
    assert report.repaired == {"kind: case or whitespace normalized": 1}
    assert "skipped 1 (exact duplicate row)" in report.summary()


def test_skip_mode_counts_bad_rows_by_reason():
    frame = events(ts=(0, "never"), id=(1, ""))
    clean, report = validate_frame("events", frame, "events.csv", bad_rows="skip")
    assert len(clean) == 1
    assert report.skipped == {
        "ts: unparseable timestamp (want epoch seconds or ISO-8601)": 1,
        "id: null or blank id": 1,
    }


def test_skip_mode_skips_conflicting_requests_and_duplicates_and_counts_them():
    two_users = impressions(user_id=(1, "u9"))  # r1: rows 1-2 have two users
    extra = pd.DataFrame({"request_id": ["r3", "r3", "r4"], "user_id": ["u3", "u3", "u4"], "ts": [T0 + 120] * 3,
                          "prefix": ["", "", ""], "candidate": ["c1", "c1", "c2"], "position": [0, 4, 0], "clicked": [0, 0, 1]})
    frame = pd.concat([two_users, extra], ignore_index=True)  # r3 shows c1 twice, at positions 0 and 4
    with pytest.raises(SchemaError, match=r"impressions.csv, column 'candidate': the same \(request_id, candidate\).*row 4 \('c1'\), row 5"):
        validate_frame("impressions", frame, "impressions.csv")
    clean, report = validate_frame("impressions", frame, "impressions.csv", bad_rows="skip")
    assert clean["request_id"].tolist() == ["r2", "r4"]
    assert report.rows_read == 6 and report.rows_kept == 2
    assert report.skipped == {
        "candidate: the same (request_id, candidate) appears in rows that differ elsewhere": 2,
        "request_id: one request_id has several user_id or ts values": 2,
    }
    time_conflict = impressions(ts=(1, T0 + 1))
    with pytest.raises(SchemaError, match=r"one request_id has several user_id or ts values.*row 1 \('r1'\), row 2 \('r1'\)"):
        validate_frame("impressions", time_conflict, "impressions.csv")
    clean, report = validate_frame("impressions", time_conflict, "impressions.csv", bad_rows="skip")
    assert clean["request_id"].tolist() == ["r2"]
    assert report.skipped == {"request_id: one request_id has several user_id or ts values": 2}


def test_every_row_skipped_is_an_error_that_says_nothing_is_left_and_why():
    frame = events(ts=(0, "never"), id=(1, ""), kind=(2, "click"))
    with pytest.raises(SchemaError, match=r"events.csv: every row was skipped, nothing is left \(3 read; skipped: "
                                          r"1 ts: unparseable timestamp.*1 kind: kind must be one of.*1 id: null or blank id"):
        validate_frame("events", frame, "events.csv", bad_rows="skip")
    with pytest.raises(SchemaError, match=r"impressions.csv: every row was skipped, nothing is left"):
        validate_frame("impressions", impressions(user_id=(1, "u9"), clicked=(2, 3)), "impressions.csv", bad_rows="skip")


def test_an_empty_events_file_is_a_warning_and_empty_impressions_an_error(tmp_path):
    events().head(0).to_csv(tmp_path / "events.csv", index=False)
    impressions().to_csv(tmp_path / "impressions.csv", index=False)
    logs = load_logs(tmp_path)
    report = logs.reports[0]
    assert report.rows_read == 0 and len(logs.events) == 0
    assert report.warnings == ["the events file has no rows: every history is empty and the q2q/i2i graphs have no edges"]
    assert "WARNING: the events file has no rows" in report.summary()
    assert report.to_dict()["warnings"] == report.warnings
    impressions().head(0).to_csv(tmp_path / "impressions.csv", index=False)
    with pytest.raises(SchemaError, match=r"impressions.csv: no rows"):
        load_logs(tmp_path)


def test_an_empty_events_file_warns_then_the_build_says_what_is_missing(tiny_logs, tmp_path):
    """The validation warns; with no events there are no items to embed, so the build stops and says so."""
    from dropdown_rank.build import BuildConfig, build
    from dropdown_rank.split import SplitConfig

    logs = tmp_path / "logs"
    logs.mkdir()
    pd.read_parquet(tiny_logs / "events.parquet").head(0).to_parquet(logs / "events.parquet", index=False)
    pd.read_parquet(tiny_logs / "impressions.parquet").to_parquet(logs / "impressions.parquet", index=False)
    lines = []
    with pytest.raises(ValueError, match="has no items: the rankers embed users, queries and items"):
        build(logs, tmp_path / "work", BuildConfig(split=SplitConfig(valid_days=2, test_days=2)), progress=lines.append,
              progress_bar=False)
    assert any("validate:" in line and "WARNING: the events file has no rows" in line for line in lines)
    assert not (tmp_path / "work").exists()


def test_null_prefix_is_repaired_and_numeric_ids_cast(tmp_path):
    frame = impressions(prefix=(0, None)).assign(user_id=[1, 1, 2])
    clean, report = validate_frame("impressions", frame, "impressions.parquet")
    assert clean["prefix"].tolist() == ["", "re", ""]
    assert clean["user_id"].tolist() == ["1", "1", "2"]
    assert report.repaired["prefix: null read as empty string"] == 1


def test_load_logs_detects_csv_and_parquet_by_extension(tmp_path):
    events().to_csv(tmp_path / "events.csv", index=False)
    impressions().to_parquet(tmp_path / "impressions.parquet", index=False)
    logs = load_logs(tmp_path)
    assert len(logs.events) == 3 and len(logs.impressions) == 3
    (tmp_path / "events.parquet").write_bytes(b"")
    with pytest.raises(SchemaError, match="several 'events' tables"):
        load_logs(tmp_path)


def test_csv_bad_row_reports_file_path(tmp_path):
    events(ts=(1, "2026-02-30T00:00:00")).to_csv(tmp_path / "events.csv", index=False)
    impressions().to_csv(tmp_path / "impressions.csv", index=False)
    with pytest.raises(SchemaError, match=r"events.csv, column 'ts': unparseable timestamp.*row 2"):
        load_logs(tmp_path)


def test_whole_float_ids_are_integer_text_and_a_fraction_is_a_bad_row(tmp_path):
    """Parquet ids typed float (pandas writes an integer column with a null as float) read as "11", not "11.0", so
    that they match the same ids served as integers or read from a CSV; a fractional id is refused."""
    frame = events().assign(user_id=[11.0, 12.0, 11.0], id=["red shoes", "sku1", "blue shoes"])
    frame.to_parquet(tmp_path / "events.parquet", index=False)
    impressions().assign(user_id=[11, 11, 12]).to_parquet(tmp_path / "impressions.parquet", index=False)
    logs = load_logs(tmp_path)
    assert sorted(logs.events["user_id"]) == ["11", "11", "12"] == sorted(logs.impressions["user_id"])
    assert logs.reports[0].repaired == {"user_id: numeric values cast to str": 3}
    with pytest.raises(SchemaError, match=r"column 'user_id': a float id that is not a whole number below 2\*\*53 .*row 2 \(11.5\)"):
        validate_frame("events", events().assign(user_id=[11.0, 11.5, np.inf]), "events.parquet")
    # 2**53 + 2 and 2**63 are whole floats, but not every id near them is: they would merge with their neighbors
    frame = pd.concat([events()] * 2, ignore_index=True).assign(user_id=[11.0, 11.5, np.inf, 2.0 ** 53 + 2, 2.0 ** 63, np.nan])
    clean, report = validate_frame("events", frame, "events.parquet", bad_rows="skip")
    assert clean["user_id"].tolist() == ["11"]
    assert report.skipped["user_id: a float id that is not a whole number below 2**53 (ids are text or integers; store large "
                          "integer ids as int64 or text, not float)"] == 4
    assert report.skipped["user_id: null or blank id"] == 1
    assert report.repaired["user_id: numeric values cast to str"] == 1  # the kept row only


def test_blank_is_what_str_strip_removes_in_the_build_and_in_the_constant_serving_reads():
    spaces = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
    assert spaces == WHITESPACE
    ids = [2 * c for c in spaces] + ["\u200b", "\xa0x"]  # a zero-width space is not whitespace to str.strip()
    clean, report = validate_frame("events", pd.DataFrame({"user_id": "u", "ts": str(T0), "kind": "query", "id": ids}),
                                   "events.csv", bad_rows="skip")
    assert clean["id"].tolist() == ["\u200b", "\xa0x"] and report.skipped == {"id: null or blank id": len(spaces)}
