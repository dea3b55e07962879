"""Validation: one test per kind of bad input, each asserting the message; repairs and skips counted."""
import numpy as np
import pandas as pd
import pytest

from dropdown_rank.logs.schema import SchemaError, load_logs, validate_events, validate_impressions

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
    clean, report = validate_events(events().iloc[::-1], "events.csv")
    assert clean["ts"].dtype == np.int64
    assert sorted(clean["ts"]) == [T0, T0 + 5, T0 + 10]
    assert report.rows_read == report.rows_kept == 3
    assert not report.skipped


def test_missing_column_names_file_and_column():
    with pytest.raises(SchemaError, match=r"events.csv, column 'kind': missing column"):
        validate_events(events().drop(columns="kind"), "events.csv")


def test_null_id_names_the_row():
    with pytest.raises(SchemaError, match=r"events.csv, column 'id': null or blank id: 1 bad row\(s\); first: row 2 \(''\)"):
        validate_events(events(id=(1, "")), "events.csv")


def test_null_id_in_parquet_style_none():
    with pytest.raises(SchemaError, match=r"column 'user_id': null or blank id.*row 3"):
        validate_events(events(user_id=(2, None)), "events.parquet")


def test_unparseable_ts_shows_the_value():
    with pytest.raises(SchemaError, match=r"column 'ts': unparseable timestamp.*row 3 \('yesterday'\)"):
        validate_events(events(ts=(2, "yesterday")), "events.csv")


def test_millisecond_ts_is_flagged():
    with pytest.raises(SchemaError, match=r"column 'ts': timestamp outside 1990..2100 \(milliseconds"):
        validate_events(events(ts=(0, str(T0 * 1000))), "events.csv")


def test_unknown_kind():
    with pytest.raises(SchemaError, match=r"column 'kind': kind must be one of query, item.*row 1 \('click'\)"):
        validate_events(events(kind=(0, "click")), "events.csv")


def test_clicked_outside_0_1():
    with pytest.raises(SchemaError, match=r"impressions.parquet, column 'clicked': value outside \{0, 1\}.*row 2 \(2\)"):
        validate_impressions(impressions(clicked=(1, 2)), "impressions.parquet")


def test_wrong_type_position():
    frame = impressions().astype({"position": object})
    frame.loc[2, "position"] = "top"
    with pytest.raises(SchemaError, match=r"column 'position': wrong type: expected an integer.*row 3 \('top'\)"):
        validate_impressions(frame, "impressions.csv")


def test_request_with_two_users_is_rejected():
    with pytest.raises(SchemaError, match=r"column 'request_id': one request_id has several user_id or ts values.*row 1"):
        validate_impressions(impressions(user_id=(1, "u9")), "impressions.csv")


def test_conflicting_duplicate_impression():
    frame = pd.concat([impressions(), impressions().iloc[[0]].assign(position=5)], ignore_index=True)
    with pytest.raises(SchemaError, match=r"column 'candidate': the same \(request_id, candidate\) appears.*row 1"):
        validate_impressions(frame, "impressions.csv")


def test_duplicates_and_repairs_are_counted_not_silent():
    frame = pd.concat([events(kind=(0, " Query")), events().iloc[[2]]], ignore_index=True)
    clean, report = validate_events(frame, "events.csv")
    assert len(clean) == 3
    assert report.skipped == {"exact duplicate row": 1}
    assert report.repaired == {"kind: case or whitespace normalized": 1}
    assert "skipped 1 (exact duplicate row)" in report.summary()


def test_skip_mode_counts_bad_rows_by_reason():
    frame = events(ts=(0, "never"), id=(1, ""))
    clean, report = validate_events(frame, "events.csv", bad_rows="skip")
    assert len(clean) == 1
    assert report.skipped == {
        "ts: unparseable timestamp (want epoch seconds or ISO-8601)": 1,
        "id: null or blank id": 1,
    }


def test_null_prefix_is_repaired_and_numeric_ids_cast(tmp_path):
    frame = impressions(prefix=(0, None)).assign(user_id=[1, 1, 2])
    clean, report = validate_impressions(frame, "impressions.parquet")
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
