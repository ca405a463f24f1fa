"""Agents that hold a book (DESIGN §7): the book stepped with the backtest's own simulation,
shown in the prompts, kept per market, ordered by date in Dagster, and reproduced row for row
by a backtest of the whole range."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dagster_project.cli import main
from dagster_project.inference_assets import decide
from inference.backends import reference
from inference.experiments import load_experiment
from ingest.calendars import sessions
from ingest.layout import DataLayout

# The sample's only limit-up open of a position-aware run falls on 2025-11-05 (600678, ST: 5 %).
WINDOW = ("2025-10-27", "2025-11-14")
ARMS = (
    "reference__free",
    "reference__guided",
    "reference__strict__conservative",
    "reference__strict__blind",
)
KEYS = ["arm", "market", "ticker", "date"]


def _read(pattern: str) -> pd.DataFrame:
    return duckdb.sql(f"select * from read_parquet('{pattern}', union_by_name = true)").df()


def _books(layout: DataLayout) -> pd.DataFrame:
    return _read(layout.book_files)


def _corporate_actions(layout: DataLayout, market: str, day: str, split: float, cash: float):
    """Every ticker of the market goes ex on `day` (the raw file the ingest writes)."""
    tickers = pd.read_parquet(layout.raw_file(market, "universe"))["ticker"]
    events = pd.DataFrame(
        {
            "market": market,
            "ticker": tickers,
            "ex_date": pd.Timestamp(day).date(),
            "split_ratio": split,
            "cash_dividend": cash,
        }
    )
    pq.write_table(
        pa.Table.from_pandas(events, preserve_index=False),
        layout.raw_file(market, "corporate_actions"),
    )


def test_backtest_reproduces_the_stepwise_book_row_for_row(sample_copy: DataLayout):
    # Corporate actions inside the window: the book steps through them as the backtest does.
    _corporate_actions(sample_copy, "us", "2025-11-04", 2.0, 0.1)
    _corporate_actions(sample_copy, "cn", "2025-11-06", 1.3, 0.25)
    common = ["--data-dir", str(sample_copy.data_dir)]
    arms = [arg for slug in ARMS for arg in ("--arm", slug)]
    assert main([*common, "infer", *arms, "--start", WINDOW[0], "--end", WINDOW[1]]) == 0
    assert main([*common, "backtest", "--start", "2025-10-27", "--end", "2025-11-14"]) == 0
    books = _books(sample_copy)
    sleeves = _read(sample_copy.backtest_result_files("sleeves"))
    assert set(books["arm"]) == set(ARMS) and set(books["market"]) == {"us", "cn"}
    assert (books["order_status"] == "limit_up").any()  # a blocked order is in the book
    assert (books["traded_shares"] < 0).any() and (books["traded_shares"] > 0).any()
    ordered = books.sort_values(KEYS)
    held_before = ordered.groupby(["arm", "market", "ticker"])["shares"].shift()
    split = (ordered["traded_shares"] == 0) & (held_before > 0)
    split &= (ordered["market"] == "us") & (pd.to_datetime(ordered["date"]) == "2025-11-04")
    assert split.any() and (ordered["shares"][split] == 2 * held_before[split]).all()
    merged = books.merge(sleeves, on=KEYS, how="left", suffixes=("", "_backtest"), indicator=True)
    assert (merged["_merge"] == "both").all(), "every book row is a backtest row"
    shared = [c for c in sleeves.columns if c not in KEYS and c in books.columns]
    assert {"shares", "cash", "equity", "avg_entry_price", "entry_date", "order_status"} <= set(
        shared
    )
    for column in shared:
        mine, theirs = merged[column], merged[f"{column}_backtest"]
        if mine.dtype.kind == "f":
            assert np.array_equal(mine.to_numpy(), theirs.to_numpy(), equal_nan=True), column
        else:
            assert (mine.isna() == theirs.isna()).all(), column
            assert (mine[mine.notna()] == theirs[mine.notna()]).all(), column
    # the dbt mart holds the same book
    with duckdb.connect(str(sample_copy.warehouse), read_only=True) as connection:
        [(rows,)] = connection.execute("select count(*) from book").fetchall()
    assert rows == len(books)


def test_the_prompt_of_a_held_position_shows_its_book(sample_copy: DataLayout, capsys):
    arm = load_experiment().arm("reference__guided")
    days = sessions("us", "2025-03-03", "2025-03-21")
    decide([arm], days, sample_copy, markets=["us"])
    books = _books(sample_copy)
    held = books[(books["shares"] > 0) & (books["date"] < pd.Timestamp(days[-1]))].iloc[0]
    after = next(day for day in days if day > held["date"].date())
    capsys.readouterr()
    args = ["--data-dir", str(sample_copy.data_dir), "prompt", "--arm", "reference__guided"]
    args += ["--market", "us", "--ticker", held["ticker"], "--date", after.isoformat()]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"the book after the close of {held['date'].date()}" in out
    assert f"average entry price {held['avg_entry_price']:,.2f}" in out
    assert f"unrealised return {held['unrealized_return'] * 100:+.2f} %" in out
    assert f"book reference__guided after the close of {held['date'].date()}" in out
    # the request printed is the one the pipeline sent (same hash)
    decisions = _read(str(sample_copy.decision_files))
    sent = decisions[
        (decisions["ticker"] == held["ticker"])
        & (decisions["decision_date"] == pd.Timestamp(after))
    ]["request_hash"].iloc[0]
    assert f"request {sent[:16]}" in out
    first = ["--data-dir", str(sample_copy.data_dir), "prompt", "--arm", "reference__free"]
    first += ["--market", "us", "--ticker", held["ticker"], "--date", "2025-03-03"]
    assert main(first) == 0
    assert "none yet for reference__free" in capsys.readouterr().out


def test_arms_and_markets_in_any_order_keep_every_row(sample_copy: DataLayout):
    experiment = load_experiment()
    days = sessions("us", "2025-03-03", "2025-03-05")
    order = [("reference__free", "cn"), ("reference__strict", "us")]
    order += [("reference__free", "us"), ("reference__strict", "cn")]
    for slug, market in order:
        decide([experiment.arm(slug)], days, sample_copy, markets=[market])
    rows = _read(str(sample_copy.decision_files))
    counts = rows.groupby(["arm", "market"]).size().to_dict()
    assert counts == {(slug, market): 14 * 3 for slug, market in order}
    assert not rows.duplicated(["arm", "market", "ticker", "decision_date"]).any()


def test_baselines_backtest_before_any_decision(sample_copy: DataLayout, capsys):
    common = ["--data-dir", str(sample_copy.data_dir), "backtest", "--baseline", "buy_and_hold"]
    assert main(common) == 0
    assert "buy_and_hold" in capsys.readouterr().out


def test_a_changed_decision_makes_later_partitions_stale_and_a_rerun_changes_only_those(
    sample_copy: DataLayout, tmp_path, monkeypatch
):
    import dagster as dg
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    from dagster_project.inference_assets import LLM_DECISIONS
    from dagster_project.location import location_for
    from dagster_project.runner import infer

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STRAT_LLM_DATA", str(sample_copy.data_dir))
    monkeypatch.setenv("STRAT_LLM_WAREHOUSE", str(sample_copy.warehouse))
    arm, start, end = "reference__free", date(2025, 3, 3), date(2025, 3, 7)
    changed_day, next_day = date(2025, 3, 5), date(2025, 3, 6)  # Wed, Thu
    config = {"markets": ["us"]}
    infer([arm], start, end, config)
    before = _read(str(sample_copy.decision_files))
    # A different answer on Wednesday for one ticker: sell out a holding, or buy in.
    row = before[before["decision_date"] == pd.Timestamp(changed_day)].iloc[0]
    answer = {"action": "sell", "target_exposure": 0.0, "confidence": 0.9, "rule": None}
    if row["previous_exposure"] == 0:
        answer = {"action": "buy", "target_exposure": 1.0, "confidence": 0.9, "rule": None}
    # The rule agent is asked again on every run (its answers are not cached): it changes its
    # mind about this ticker on Wednesday, from now on.
    rule_agent = reference.decide

    def changed(context: reference.DecisionContext) -> dict:
        snapshot = context.snapshot
        if (snapshot["ticker"], snapshot["decision_date"]) == (row["ticker"], changed_day):
            return {**answer, "reason": "changed"}
        return rule_agent(context)

    monkeypatch.setattr(reference, "decide", changed)
    # Its decisions of Wednesday are current by everything recorded (same snapshot, rules
    # source and book): only --force asks again.
    assert "up to date" in infer([arm], changed_day, changed_day, config)
    out = infer([arm], changed_day, changed_day, config, force=True)
    # Dagster: the decisions of Thursday read Wednesday's book, which was rematerialized
    resolver = get_stale_status_resolver(
        dg.DagsterInstance.get(), list(location_for(sample_copy).definitions().assets)
    )
    status = {
        day: resolver.get_status(LLM_DECISIONS, f"{arm}|{day.isoformat()}")
        for day in (date(2025, 3, 4), changed_day, next_day)
    }
    assert status[next_day] == StaleStatus.STALE
    assert status[date(2025, 3, 4)] == status[changed_day] == StaleStatus.FRESH
    # the asset check lists the whole chain: the changed ticker's later decisions
    assert "made on a book that has changed since" in out
    assert f"{arm}|{next_day.isoformat()}" in out

    out = infer([arm], start, end, config)
    after = _read(str(sample_copy.decision_files))
    merged = before.merge(after, on=["market", "ticker", "decision_date"], suffixes=("", "_new"))
    later = merged["decision_date"] > pd.Timestamp(changed_day)
    changed_books = (later & (merged["book_hash"] != merged["book_hash_new"])).sum()
    assert 0 < changed_books < later.sum()  # only the changed ticker's later prompts differ
    assert f"{len(after)} calls" in out  # a rule agent is recomputed, not read from the cache
