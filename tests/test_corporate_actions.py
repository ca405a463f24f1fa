"""Corporate actions end to end: the optional raw file, the sample's events and the warehouse's
point-in-time adjustment (DESIGN §4): features never jump at an event, and a prompt shows
levels on the basis its decision can know."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dagster_project.cli import main
from ingest.calendars import sessions
from ingest.layout import DataLayout
from ingest.load import IngestError, ingest_files
from ingest.sample import generate_sample_market
from ingest.validation import ContractError
from tests.conftest import REAL_CONTRACT, TINY_US, write_dataset

EX_DATE = date(2025, 3, 5)  # a Wednesday
DAYS = sessions("us", date(2025, 2, 3), date(2025, 3, 14))
DAILY_MOVE = 0.01  # every session's underlying return
DIVIDEND_SHARE = 0.10  # BBB pays 10 % of the close before its ex-date


def _raw_closes() -> dict[str, list[float]]:
    """As traded: AAA halves at its 2-for-1 split, BBB opens 10 % lower after its dividend;
    underneath, both rise 1 % every session."""
    closes: dict[str, list[float]] = {"AAA": [], "BBB": []}
    for index, day in enumerate(DAYS):
        underlying = (1 + DAILY_MOVE) ** index
        after = day >= EX_DATE
        closes["AAA"].append(round(100 * underlying / (2 if after else 1), 8))
        closes["BBB"].append(round(50 * underlying * (1 - DIVIDEND_SHARE if after else 1), 8))
    return closes


def _constructed_market() -> dict[str, str]:
    closes = _raw_closes()
    price_rows = ["ticker,date,open,high,low,close,volume"]
    for ticker, series in closes.items():
        for day, close in zip(DAYS, series, strict=True):
            volume = 2000 if ticker == "AAA" and day >= EX_DATE else 1000  # twice the shares
            price_rows.append(f"{ticker},{day},{close},{close},{close},{close},{volume}")
    before = DAYS[DAYS.index(EX_DATE) - 1]
    dividend = round(closes["BBB"][DAYS.index(before)] * DIVIDEND_SHARE, 8)
    return {
        "universe": "ticker,name\nAAA,Alpha Corp\nBBB,Beta Inc\n",
        "prices": "\n".join(price_rows) + "\n",
        "benchmark": "date,close,kind\n"
        + "".join(f"{day},{5000 + i},total_return\n" for i, day in enumerate(DAYS)),
        "news": "news_id,ticker,published_at,headline\n",
        "reports": TINY_US["reports"].split("\n")[0] + "\n",
        # AAA's split was announced weeks ahead; BBB's dividend has no announcement time, so
        # it is known only at the ex-date's open (after the decision's cutoff).
        "corporate_actions": (
            "ticker,ex_date,split_ratio,cash_dividend,announced_at\n"
            f"AAA,{EX_DATE},2,0,2025-02-20T16:30:00-05:00\n"
            f"BBB,{EX_DATE},1,{dividend},\n"
        ),
        "risk_free": "date,annual_rate\n2025-02-03,0.043\n2025-03-03,0.0425\n",
    }


@pytest.fixture(scope="module")
def constructed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corporate_actions")
    dataset = write_dataset(root / "dataset", _constructed_market())
    data_dir = root / "data"
    common = ["--data-dir", str(data_dir)]
    assert main([*common, "ingest", "--source", "files", "--path", str(dataset)]) == 0
    assert main([*common, "build"]) == 0
    return data_dir / "warehouse.duckdb"


def _snapshot(warehouse: Path, ticker: str, day: date) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        frame = connection.execute(
            "select features, price_history from pit_snapshots"
            " where market = 'us' and ticker = ? and decision_date = ?",
            [ticker, day],
        ).df()
    assert len(frame) == 1, f"no snapshot of {ticker} for {day}"
    return frame.iloc[0].to_dict()


def _closes_shown(snapshot: dict) -> dict[date, float]:
    return {bar["date"]: bar["close"] for bar in snapshot["price_history"]}


def _next_session(day: date) -> date:
    return DAYS[DAYS.index(day) + 1]


@pytest.mark.parametrize("ticker", ["AAA", "BBB"])
def test_features_do_not_jump_at_the_event(constructed: Path, ticker: str):
    after_ex = _snapshot(constructed, ticker, _next_session(EX_DATE))  # last bar: the ex-date
    features = after_ex["features"]
    assert features["ret_1d"] == pytest.approx(DAILY_MOVE, rel=1e-6)
    assert features["ret_5d"] == pytest.approx((1 + DAILY_MOVE) ** 5 - 1, rel=1e-6)
    assert features["ret_20d"] == pytest.approx((1 + DAILY_MOVE) ** 20 - 1, rel=1e-6)
    assert features["volume_ratio_20d"] == pytest.approx(1.0)  # AAA's doubled shares count once
    # A steady 1 % climb: no losses in 14 sessions, the same dispersion-free returns.
    assert features["rsi_14"] == pytest.approx(100.0)
    assert features["volatility_20d"] == pytest.approx(0.0, abs=1e-6)


def test_a_prompt_before_the_event_shows_only_unadjusted_levels(constructed: Path):
    raw = dict(zip(DAYS, _raw_closes()["AAA"], strict=True))
    day_before = DAYS[DAYS.index(EX_DATE) - 1]
    snapshot = _snapshot(constructed, "AAA", day_before)
    assert _closes_shown(snapshot) == pytest.approx({d: raw[d] for d in _closes_shown(snapshot)})
    assert snapshot["features"]["last_close"] == pytest.approx(raw[DAYS[DAYS.index(EX_DATE) - 2]])


def test_an_announced_split_moves_the_levels_to_the_new_basis_on_its_ex_date(constructed: Path):
    raw = dict(zip(DAYS, _raw_closes()["AAA"], strict=True))
    snapshot = _snapshot(constructed, "AAA", EX_DATE)  # announced long before the cutoff
    shown = _closes_shown(snapshot)
    assert max(shown) < EX_DATE
    assert shown == pytest.approx({day: raw[day] / 2 for day in shown})
    last_five = [close for _, close in sorted(shown.items())][-5:]
    assert snapshot["features"]["ma_5"] == pytest.approx(sum(last_five) / 5)


def test_an_unannounced_dividend_is_applied_from_the_next_decision(constructed: Path):
    raw = dict(zip(DAYS, _raw_closes()["BBB"], strict=True))
    on_ex = _closes_shown(_snapshot(constructed, "BBB", EX_DATE))
    assert on_ex == pytest.approx({day: raw[day] for day in on_ex})  # known only at the open
    later = _snapshot(constructed, "BBB", date(2025, 3, 11))
    shown = _closes_shown(later)
    expected = {day: raw[day] * (1 - DIVIDEND_SHARE if day < EX_DATE else 1) for day in shown}
    assert any(day < EX_DATE for day in shown) and any(day >= EX_DATE for day in shown)
    assert shown == pytest.approx(expected)
    assert later["features"]["last_close"] == pytest.approx(raw[date(2025, 3, 10)])


def test_the_split_history_stays_on_the_post_split_basis(constructed: Path):
    raw = dict(zip(DAYS, _raw_closes()["AAA"], strict=True))
    snapshot = _snapshot(constructed, "AAA", date(2025, 3, 12))
    shown = _closes_shown(snapshot)
    assert shown == pytest.approx({day: raw[day] / (2 if day < EX_DATE else 1) for day in shown})
    volumes = {bar["date"]: bar["volume"] for bar in snapshot["price_history"]}
    assert list(volumes.values()) == pytest.approx([2000.0] * len(volumes))


def test_optional_tables_and_benchmark_kind_reach_staging(constructed: Path):
    with duckdb.connect(str(constructed), read_only=True) as connection:
        kinds = connection.execute("select distinct benchmark_kind from stg_raw__benchmark").df()
        rates = connection.execute("select * from stg_raw__risk_free order by date").df()
        actions = connection.execute(
            "select ticker, known_from from stg_raw__corporate_actions order by ticker"
        ).df()
    assert kinds["benchmark_kind"].tolist() == ["total_return"]
    assert rates["annual_rate"].tolist() == [0.043, 0.0425]
    assert actions["known_from"].tolist() == [
        pd.Timestamp("2025-02-20T21:30:00Z"),
        pd.Timestamp("2025-03-05T14:30:00Z"),  # no announcement: the ex-date's open
    ]


# --------------------------------------------------------------------------------------------
# Ingest: bad rows named and quarantined, optional files, the benchmark's kind
# --------------------------------------------------------------------------------------------

BAD_ACTIONS = {
    "not a session": ("AAA,2025-03-08,2,0,", "ex_date 2025-03-08 is not a XNYS trading session"),
    "zero split": ("AAA,2025-03-04,0,0,", "split_ratio 0.0 is not > 0"),
    "negative dividend": ("BBB,2025-03-04,1,-0.5,", "cash_dividend -0.5 is not >= 0"),
    "dividend above the close": (
        "BBB,2025-03-05,1,60,",
        "cash_dividend 60.0 is not below the previous close 49.0 of 2025-03-04",
    ),
    "naive announcement": (
        "AAA,2025-03-05,2,0,2025-03-01 10:00:00",
        "announced_at '2025-03-01 10:00:00' has no UTC offset",
    ),
    "announced after the open": (
        "BBB,2025-03-04,1,0.2,2025-03-04T12:00:00-05:00",
        "is after the ex-date's session open",
    ),
    "unknown ticker": ("ZZZ,2025-03-04,2,0,", "ticker 'ZZZ' is not in us/universe.csv"),
}


def _with_actions(root: Path, lines: list[str]) -> Path:
    tables = dict(TINY_US)
    tables["corporate_actions"] = (
        "ticker,ex_date,split_ratio,cash_dividend,announced_at\n" + "\n".join(lines) + "\n"
    )
    return write_dataset(root / "dataset", tables)


@pytest.mark.parametrize("case", BAD_ACTIONS)
def test_a_bad_corporate_action_is_named_with_file_row_and_reason(tmp_path: Path, case: str):
    line, reason = BAD_ACTIONS[case]
    dataset = _with_actions(tmp_path, ["AAA,2025-03-05,2,0,", line])
    with pytest.raises(IngestError) as error:
        ingest_files(DataLayout(tmp_path / "data"), dataset)
    assert "us/corporate_actions.csv row 2: " in str(error.value)
    assert reason in str(error.value)


def test_bad_corporate_actions_are_quarantined_and_the_rest_loaded(tmp_path: Path):
    lines = ["AAA,2025-03-05,2,0,", *(line for line, _ in BAD_ACTIONS.values())]
    lines.append("AAA,2025-03-05,3,0,")  # the same ticker and ex-date again
    layout = DataLayout(tmp_path / "data")
    [summary] = ingest_files(layout, _with_actions(tmp_path, lines), on_bad_rows="quarantine")
    assert summary.tables["corporate_actions"].rows == 0  # the first row is a duplicate too
    quarantined = pd.read_parquet(layout.quarantine_file("us", "corporate_actions"))
    assert quarantined["_row"].tolist() == list(range(1, len(lines) + 1))
    assert (
        "duplicate key (ticker=AAA, ex_date=2025-03-05) also at row(s) 6, 9"
        in (quarantined.loc[0, "_reason"])
    )


def test_absent_optional_files_are_empty_tables_with_the_contract_schema(tmp_path: Path):
    layout = DataLayout(tmp_path / "data")
    ingest_files(layout, write_dataset(tmp_path / "dataset", TINY_US))
    actions = pq.read_table(layout.raw_file("us", "corporate_actions"))
    assert actions.num_rows == 0
    assert actions.schema.names == [
        "market",
        "ticker",
        "ex_date",
        "split_ratio",
        "cash_dividend",
        "announced_at",
    ]
    assert str(actions.schema.field("announced_at").type) == "timestamp[us, tz=UTC]"
    assert pq.read_table(layout.raw_file("us", "risk_free")).schema.names == [
        "market",
        "date",
        "annual_rate",
    ]
    benchmark = pq.read_table(layout.raw_file("us", "benchmark")).to_pandas()
    assert benchmark["kind"].unique().tolist() == ["price"]  # no kind column: a price index


def test_a_benchmark_mixing_kinds_is_refused(tmp_path: Path):
    tables = dict(TINY_US)
    tables["benchmark"] = (
        "date,close,kind\n2025-03-03,5000,total_return\n2025-03-04,5010.5,price\n"
        "2025-03-05,4990.25,total_return\n"
    )
    with pytest.raises(ContractError, match="kind mixes price, total_return"):
        ingest_files(DataLayout(tmp_path / "data"), write_dataset(tmp_path / "dataset", tables))


def test_a_risk_free_rate_in_percent_is_rejected(tmp_path: Path):
    tables = dict(TINY_US)
    tables["risk_free"] = "date,annual_rate\n2025-03-03,0.045\n2025-03-04,4.5\n"
    with pytest.raises(IngestError, match=r"us/risk_free.csv row 2: annual_rate 4.5 is not a"):
        ingest_files(DataLayout(tmp_path / "data"), write_dataset(tmp_path / "dataset", tables))


# --------------------------------------------------------------------------------------------
# The sample market's events
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("market", ["us", "cn"])
def test_sample_has_a_split_a_bonus_issue_and_dividends_that_move_raw_prices(market: str):
    frames = generate_sample_market(market)
    actions = frames["corporate_actions"]
    assert (actions["split_ratio"] >= 2).any()  # a forward split
    assert ((actions["split_ratio"] > 1) & (actions["split_ratio"] < 2)).any()  # a bonus issue
    assert (actions["cash_dividend"] > 0).sum() >= 3
    assert actions["announced_at"].isna().any()  # one known only at its ex-date's open
    assert frames["benchmark"]["kind"].unique().tolist() == ["total_return"]
    prices = frames["prices"]
    for event in actions.itertuples():
        bars = prices[prices["ticker"] == event.ticker].reset_index(drop=True)
        index = bars.index[bars["date"] == event.ex_date][0]
        reference = (bars.loc[index - 1, "close"] - event.cash_dividend) / event.split_ratio
        # The ex-date opens near the ex reference price: the raw series really drops.
        assert bars.loc[index, "open"] == pytest.approx(reference, rel=0.05), event


# --------------------------------------------------------------------------------------------
# The real dataset: CATL's 2023 bonus issue
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_CONTRACT.is_dir(), reason=f"real sample not at {REAL_CONTRACT}")
def test_catl_bonus_issue_is_no_forty_percent_fall(tmp_path: Path):
    data_dir = tmp_path / "data"
    common = ["--data-dir", str(data_dir)]
    ingest = ["ingest", "--source", "files", "--path", str(REAL_CONTRACT), "--market", "cn"]
    assert main([*common, *ingest, "--allow-missing-sessions"]) == 0
    assert main([*common, "build", "--start", "2023-04-20", "--end", "2023-05-05"]) == 0
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        frame = connection.execute(
            "select decision_date, features.ret_1d, features.last_close, price_history"
            " from pit_snapshots where ticker = '300750' and decision_date"
            " in (date '2023-04-26', date '2023-04-27') order by decision_date"
        ).df()
    on_ex, after = frame.itertuples(index=False)
    # 2023-04-26 is the ex-date: 10 for 8 bonus shares and 2.52 CNY, raw close 385.9 -> 224.5.
    assert abs(after.ret_1d) < 0.1
    assert after.last_close < 250  # the ex-date's own raw close
    history = after.price_history
    assert all(bar["close"] < 250 for bar in history)  # earlier bars back-adjusted onto it
    # Unannounced in the source: the decision of the ex-date itself still sees raw levels.
    assert on_ex.last_close > 350
