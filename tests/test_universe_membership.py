"""Universe membership (optional member_from / member_to): validated on ingest, and a held
position is sold at the first open after membership ends. The snapshot grid's side is the dbt
unit test snapshots_only_for_members_on_the_decision_date (_int__models.yml)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.simulation import SeriesRules, TradingRules, simulate
from backtest.targets import membership, sell_after_membership
from ingest.files import read_market_files
from ingest.validation import validate_market
from tests.conftest import TINY_US, write_dataset

NAN = np.nan


def _validated(tmp_path: Path, universe: str):
    root = write_dataset(tmp_path / "dataset", {**TINY_US, "universe": universe})
    return validate_market("us", read_market_files(root, "us"))


def test_membership_columns_are_optional_and_open_ended_when_empty(tmp_path: Path):
    result = _validated(
        tmp_path,
        "ticker,name,member_from,member_to\nAAA,Alpha Corp,2025-03-04,\nBBB,Beta Inc,,\n",
    )
    assert result.n_rejected == 0
    universe = result.tables["universe"].set_index("ticker")
    assert universe.loc["AAA", "member_from"] == date(2025, 3, 4)
    assert universe.loc["AAA", "member_to"] is None
    assert universe.loc["BBB", "member_from"] is None
    assert _validated(tmp_path / "without", TINY_US["universe"]).n_rejected == 0


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            "AAA,Alpha Corp,2025-03-31,2025-02-28",
            "member_from 2025-03-31 is after member_to 2025-02-28",
        ),
        ("AAA,Alpha Corp,2025-02-30,", "member_from '2025-02-30' is not a date as YYYY-MM-DD"),
        ("AAA,Alpha Corp,,March 2025", "member_to 'March 2025' is not a date as YYYY-MM-DD"),
    ],
)
def test_a_bad_membership_is_a_named_bad_row(tmp_path: Path, row: str, reason: str):
    result = _validated(tmp_path, f"ticker,name,member_from,member_to\n{row}\nBBB,Beta Inc,,\n")
    rejected = result.rejected["universe"]
    assert list(rejected["_row"]) == [1]
    assert reason in rejected["_reason"].iloc[0]


def test_membership_is_inclusive_and_open_ended():
    universe = pd.DataFrame(
        {
            "ticker": ["AAA", "BBB", "CCC"],
            "member_from": [date(2025, 3, 4), None, None],
            "member_to": [None, date(2025, 3, 4), None],
        }
    )
    sessions = pd.DatetimeIndex(["2025-03-03", "2025-03-04", "2025-03-05"])
    member, after = membership(universe, pd.Index(["AAA", "BBB", "CCC"]), sessions)
    np.testing.assert_array_equal(
        member, [[False, True, True], [True, True, False], [True, True, True]]
    )
    np.testing.assert_array_equal(
        after, [[False, False, False], [False, False, True], [False, False, False]]
    )
    # No membership columns (a universe ingested before them): every ticker always a member.
    member, after = membership(universe[["ticker"]], pd.Index(["AAA"]), sessions)
    assert member.all() and not after.any()
    with pytest.raises(ValueError, match="ZZZ"):
        membership(universe, pd.Index(["ZZZ"]), sessions)


def test_a_position_is_sold_at_the_first_open_after_membership_ends():
    """Bought while a member; member_to is the third session: the fourth session's target is
    0 (sold at its open), whatever the arm wanted, and no later session buys it back."""
    after = np.array([[False, False, False, True, True]])
    wanted = np.array([[1.0, NAN, NAN, NAN, 1.0]])
    targets = sell_after_membership(wanted, after)
    np.testing.assert_array_equal(targets, [[1.0, NAN, NAN, 0.0, 0.0]])
    prices = np.array([[10.0, 10.5, 11.0, 11.5, 12.0]])
    rules = SeriesRules.stack([TradingRules(lot_size=1, initial_capital=10_000.0)])
    result = simulate(targets, prices, prices, rules)
    assert result.shares[0, 2] > 0
    assert result.shares[0, 3] == 0 and result.shares[0, 4] == 0


def test_a_ticker_leaving_the_index_has_no_snapshot_after_and_is_sold(sample_copy):
    """The sample with AXRB a member up to 2025-06-30 only: no snapshot after that date, and
    buy-and-hold (which holds it from the start) sells it at the next session's open."""
    import duckdb
    import pyarrow.parquet as pq

    from dagster_project.cli import main
    from ingest.load import to_arrow

    layout, last_day = sample_copy, date(2025, 6, 30)
    path = layout.raw_file("us", "universe")
    universe = pd.read_parquet(path)
    universe["member_to"] = [last_day if t == "AXRB" else None for t in universe["ticker"]]
    pq.write_table(to_arrow("universe", universe), path)
    common = ["--data-dir", str(layout.data_dir)]
    assert main([*common, "build", "--force"]) == 0
    assert main([*common, "backtest", "--baseline", "buy_and_hold", "--market", "us"]) == 0
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        [(last_snapshot,)] = connection.execute(
            "select max(decision_date) from pit_snapshots where ticker = 'AXRB'"
        ).fetchall()
    assert last_snapshot == last_day
    sleeves = pd.read_parquet(layout.backtest_result_file("sleeves", "buy_and_hold", "us"))
    axrb = sleeves[sleeves["ticker"] == "AXRB"].sort_values("date")
    held = axrb[pd.to_datetime(axrb["date"]) <= pd.Timestamp(last_day)]
    after = axrb[pd.to_datetime(axrb["date"]) > pd.Timestamp(last_day)]
    assert held["shares"].iloc[-1] > 0
    assert after["target_exposure"].iloc[0] == 0.0 and after["traded_shares"].iloc[0] < 0
    assert (after["shares"] == 0).all()
