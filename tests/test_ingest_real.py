"""The real sample in ../shared loads through the files source, quirks named and accepted."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.layout import DataLayout
from ingest.load import IngestError, ingest_files, read_manifest
from tests.conftest import REAL_CONTRACT

pytestmark = pytest.mark.skipif(
    not REAL_CONTRACT.is_dir(),
    reason=f"real sample not present at {REAL_CONTRACT} (../shared is outside the repo)",
)


def test_real_sample_names_its_missing_sessions(tmp_path: Path):
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(IngestError) as error:
        ingest_files(layout, REAL_CONTRACT)
    message = str(error.value)
    # Every U.S. name lacks 2025-01-10 and 01-13; 16 also lack 2025-02-11..02-19.
    assert "us: 16 series" in message and "2025-02-11" in message
    assert "us: 4 series (GS, HD, MSFT, V) miss 2025-01-10, 2025-01-13" in message
    assert not (layout.data_dir / "raw").exists()


def test_real_sample_loads_with_missing_sessions_accepted(tmp_path: Path):
    layout = DataLayout(tmp_path / "data")
    summaries = {
        s.market: s for s in ingest_files(layout, REAL_CONTRACT, allow_missing_sessions=True)
    }
    us, cn = summaries["us"], summaries["cn"]
    assert us.tables["prices"].rows == 2984 and us.tables["news"].rows == 5523
    assert us.tables["reports"].rows == 39 and us.tables["universe"].rows == 20
    assert cn.tables["prices"].rows == 4365 and cn.tables["benchmark"].rows == 1455
    # Empty tables are valid tables: the CN sample has no news and no reports.
    assert cn.tables["news"].rows == 0 and cn.tables["reports"].rows == 0
    assert pq.read_table(layout.raw_file("cn", "news")).num_rows == 0
    assert sum(table.quarantined for s in summaries.values() for table in s.tables.values()) == 0
    # CN codes keep their leading zeros.
    universe = pq.read_table(layout.raw_file("cn", "universe")).column("ticker").to_pylist()
    assert "000858" in universe
    accepted = read_manifest(layout, "us")["missing_sessions_accepted"]
    assert accepted["AAPL"][:2] == ["2025-01-10", "2025-01-13"]
    assert sum(len(days) for days in accepted.values()) == 136
