"""The benchmark's DuckDB comparison does the collection job's work: it gives back the generated sessions."""
import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks.collection_duckdb import join_with_duckdb
from collection.dates import DateRange
from collection.rules import CollectionRules
from data.generator import SESSION_SCHEMA, generate_sessions
from data.raw_sources import raw_sources, write_raw_sources


def test_duckdb_alone_collects_the_generated_sessions(tmp_path):
    sessions = generate_sessions(2000, seed=3, spans=3)
    write_raw_sources(raw_sources(sessions, seed=3), tmp_path)
    days = DateRange(datetime.date(2026, 1, 1), datetime.date(2026, 1, 3))

    collected = join_with_duckdb(str(tmp_path / "parquet"), CollectionRules(), days, "2026-01-01").to_pandas()

    expected = sessions.sort_values("session_id").reset_index(drop=True)
    assert collected["session_id"].tolist() == expected["session_id"].tolist()
    for column in SESSION_SCHEMA.names:
        if isinstance(SESSION_SCHEMA.field(column).type, pa.ListType):
            assert [set(v) for v in collected[column]] == [set(v) for v in expected[column]], column
        elif column == "coolant_temp_c":
            np.testing.assert_allclose(collected[column], expected[column], rtol=1e-9)
        else:
            pd.testing.assert_series_equal(collected[column], expected[column], check_dtype=False, obj=column)


def test_a_shorter_claim_window_loses_the_late_claims(tmp_path):
    sessions = generate_sessions(1000, seed=4, spans=2)
    write_raw_sources(raw_sources(sessions, seed=4), tmp_path)
    days = DateRange(datetime.date(2026, 1, 1), datetime.date(2026, 1, 2))
    strict = CollectionRules(max_claim_delay_days=2)

    collected = join_with_duckdb(str(tmp_path / "parquet"), strict, days, "2026-01-01")

    labelled = sum(1 for labels in collected.column("repair_labels").to_pylist() if labels)
    assert 0 < labelled < int((sessions["repair_labels"].map(len) > 0).sum())
