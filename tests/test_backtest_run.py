"""From decisions to the backtest tables: targets, baselines, per-ticker rules, the whole
pipeline on the sample market (the demo: ingest, build, gate, inference, backtest), and
results that add up: each arm over its own window, a filtered run replacing only its own."""

from __future__ import annotations

import contextlib
import io
import math
import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest.run import ticker_rules
from backtest.simulation import BPS
from backtest.targets import BASELINE_ARMS, baseline_targets, decision_targets
from dagster_project.cli import main
from inference.experiments import load_experiment
from ingest.layout import DataLayout

CN_RULES = {
    "market": "cn",
    "lot_size": 100,
    "commission_bps": 2.5,
    "min_commission": 5.0,
    "stamp_duty_sell_bps": 5.0,
    "slippage_bps": 5.0,
    "price_limit_pct": 10.0,
    "settlement": "T+1",
}
US_RULES = {**CN_RULES, "market": "us", "lot_size": 1, "price_limit_pct": None, "settlement": "T+0"}


def test_only_decisions_that_change_the_exposure_trade():
    decisions = pd.DataFrame(
        [
            # (target that stands, previous exposure, parse status)
            (0.5, 0.0, "ok"),  # buy to 0.5
            (0.5, 0.5, "ok"),  # hold, or a repeated buy: keep the shares as they drifted
            (0.5, 0.5 + 1e-12, "repaired"),  # float noise is no change either
            (0.0, 0.5, "ok"),  # sell to 0
            (0.0, 0.0, "failed"),  # unparseable: kept the previous exposure, counted
            (0.3, 0.0, "failed"),  # a failed row never trades, whatever it says
            (0.7, None, "ok"),  # no previous exposure recorded: from flat
        ],
        columns=["target_exposure", "previous_exposure", "parse_status"],
    )
    targets = decision_targets(decisions).tolist()
    assert targets[0] == 0.5 and targets[3] == 0.0 and targets[6] == 0.7
    assert all(math.isnan(targets[i]) for i in (1, 2, 4, 5))


def test_baselines_from_bars_signals_and_seed():
    has_bar = np.array([[False, True, True, True], [True, True, False, True]])
    signals = {
        f"s{n}_{side}": np.zeros((2, 4), dtype=bool)
        for n in range(1, 5)
        for side in ("entry", "exit")
    }
    signals["s2_entry"][0, 1] = True
    signals["s2_exit"][0, 3] = True
    held = baseline_targets("buy_and_hold", has_bar, signals, 0)
    assert held[0, 1] == 1.0 and held[1, 0] == 1.0 and np.isnan(held).sum() == 6
    s2 = baseline_targets("S2", has_bar, signals, 0)
    assert s2[0, 1] == 1.0 and s2[0, 3] == 0.0 and np.isnan(s2[1]).all()
    first = baseline_targets("random", has_bar, signals, [0, 1])
    assert np.array_equal(
        first, baseline_targets("random", has_bar, signals, [0, 1]), equal_nan=True
    )
    assert np.isnan(first[~has_bar]).all() and set(first[has_bar]) <= {0.0, 0.5, 1.0}
    assert not np.array_equal(
        first, baseline_targets("random", has_bar, signals, [0, 2]), equal_nan=True
    )
    with pytest.raises(ValueError, match="unknown baseline arm 'S9'"):
        baseline_targets("S9", has_bar, signals, 0)


def test_ticker_rules_by_board_name_and_override():
    universe = pd.DataFrame(
        {
            "ticker": ["600123", "300765", "688432", "600678", "000987", "601111"],
            "name": ["Jinghe Steel", "Ruixin", "Xinchuang", "ST Fuda", "*ST Baiyun", "Override"],
            "price_limit_pct": [None, None, None, None, None, 7.5],
        }
    )
    rules = ticker_rules(universe, CN_RULES, 1e6)
    limits = {ticker: rule.price_limit_pct for ticker, rule in rules.items()}
    assert limits == {
        "600123": 10.0,
        "300765": 20.0,
        "688432": 20.0,
        "600678": 5.0,
        "000987": 5.0,
        "601111": 7.5,
    }
    assert all(rule.t_plus_one and rule.lot_size == 100 for rule in rules.values())
    us = ticker_rules(pd.DataFrame({"ticker": ["AXRB"], "name": ["Apex"]}), US_RULES, 1e6)
    assert math.isnan(us["AXRB"].price_limit_pct) and not us["AXRB"].t_plus_one


# ----------------------------------------------------------------------------- the demo


def _query(layout, sql: str, *params) -> pd.DataFrame:
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        return connection.execute(sql, list(params)).df()


def test_demo_ends_with_portfolio_metrics_per_arm_and_market(demo_run):
    layout, out = demo_run
    assert "[4/4] backtest" in out and f"warehouse: {layout.warehouse}" in out
    table = out[out.index("portfolio metrics per arm and market") :]
    arms = [arm.slug for arm in load_experiment().arms]
    for market in ("us", "cn"):
        for arm in (*arms, *BASELINE_ARMS):
            line = next(line for line in table.splitlines() if line.split()[:2] == [market, arm])
            kind = (
                "random control (guardrail's effect), NOT an LLM"
                if arm == "random__strict"
                else "rule agent, NOT an LLM"
                if arm in arms
                else "baseline, NOT an LLM"
            )
            assert line.endswith(kind), line
    metrics = _query(layout, "select * from backtest_metrics where ticker = '__portfolio__'")
    assert len(metrics) == 2 * (len(arms) + len(BASELINE_ARMS))
    # fidelity in Strict, and in Guided as a reference; the rule agent trades on firing rules
    ruled = metrics[metrics["mode"].isin(["strict", "guided"])]
    assert (
        ruled["fidelity"].notna().all()
        and metrics[~metrics["mode"].isin(["strict", "guided"])]["fidelity"].isna().all()
    )
    # the rule agent changes its exposure only on its rule's firing entry or exit; the random
    # control proposes blindly, and only the guardrail keeps it to the rules
    agents = ruled[(ruled["arm_kind"] == "reference") & (ruled["arm"] != "random__strict")]
    assert len(agents) == 4 and (agents["fidelity"] == 1.0).all()
    assert (metrics[metrics["arm_kind"] == "reference"]["parse_failure_rate"] == 0).all()
    # The guardrail's control sits beside each Strict rule agent.
    strict = metrics[metrics["mode"] == "strict"]
    controls = strict.groupby("arm")["control_arm"].agg(lambda arms: set(arms.dropna()))
    assert controls.to_dict() == {"reference__strict": {"random__strict"}, "random__strict": set()}
    regimes = _query(layout, "select distinct market, regime from regime_metrics")
    assert len(regimes) == 6  # every regime in both markets


def test_decisions_after_the_last_bar_are_counted_not_traded(demo_run):
    """The demo decides through the sessions past the data (live-forward): those cannot fill."""
    layout, _ = demo_run
    arms = _query(layout, "select * from stg_landing__backtest_arms where arm_kind = 'reference'")
    for market, rows in arms.groupby("market"):
        last_bar = pd.read_parquet(layout.raw_file(market, "prices"))["date"].max()
        decisions = _query(
            layout,
            "select arm, count(*) filter (where decision_date > ?) as late, count(*) as n "
            "from stg_landing__llm_decisions where market = ? group by arm",
            last_bar,
            market,
        ).set_index("arm")
        for row in rows.itertuples():
            assert row.n_untradable_decisions == decisions.loc[row.arm, "late"] > 0
            assert row.n_decisions == decisions.loc[row.arm, "n"]
            assert pd.Timestamp(row.window_end) > pd.Timestamp(last_bar)


def test_buy_and_hold_is_the_tickers_return_net_of_one_entry(demo_run):
    """Each sleeve buys whole lots at the first open of the window (slippage and commission
    paid once) and holds: its final equity is the cash left, with the risk-free interest it
    earned every session, plus the shares at the last close; on a corporate action's ex-date
    the dividend is paid on the shares held and the shares are multiplied by the split ratio
    (a fraction of a share paid in cash at the ex-reference price): a total return."""
    layout, _ = demo_run
    rules = _query(layout, "select * from market_rules").set_index("market")
    daily = _query(
        layout,
        "select market, ticker, date, equity, fees, traded_shares, risk_free_return "
        "from backtest_daily where arm = 'buy_and_hold' and ticker != '__portfolio__' "
        "order by market, ticker, date",
    )
    assert (daily["risk_free_return"] > 0).all()
    events = {
        (market, row.ticker, pd.Timestamp(row.ex_date).date()): (row.split_ratio, row.cash_dividend)
        for market in ("us", "cn")
        for row in pd.read_parquet(layout.raw_file(market, "corporate_actions")).itertuples()
    }
    split_tickers: set[tuple[str, str]] = set()
    checked = 0
    for (market, ticker), rows in daily.groupby(["market", "ticker"]):
        prices = pd.read_parquet(layout.raw_file(market, "prices"))
        prices = prices[prices["ticker"] == ticker].copy()
        prices = prices.set_index(pd.to_datetime(prices["date"])).sort_index()
        window = prices.loc[pd.Timestamp(rows["date"].min()) : pd.Timestamp(rows["date"].max())]
        rule = rules.loc[market]
        rf = rows["risk_free_return"].to_numpy()
        capital = 1e6 + 1e6 * rf[0]  # the capital earns the first session's interest at its open
        open_price = window["open"].iloc[0] * (1 + rule["slippage_bps"] / BPS)
        lot = rule["lot_size"]
        shares = math.floor(capital / (open_price * lot)) * lot
        commission = max(rule["min_commission"], shares * open_price * rule["commission_bps"] / BPS)
        while shares * open_price + commission > capital:  # cash covers the commission too
            shares -= lot
            commission = max(
                rule["min_commission"], shares * open_price * rule["commission_bps"] / BPS
            )
        cash = capital - (shares * open_price + commission)
        bought = shares
        sessions = pd.to_datetime(rows["date"]).tolist()
        for index, rate in enumerate(rf[1:], start=1):
            cash += cash * rate
            event = events.get((market, ticker, sessions[index].date()))
            if event is not None:
                split_ratio, dividend = event
                last_close = window["close"].loc[: sessions[index - 1]].iloc[-1]
                cash += shares * dividend
                whole = math.floor(shares * split_ratio + 1e-9)
                cash += (shares * split_ratio - whole) * (last_close - dividend) / split_ratio
                shares = whole
                split_tickers.add((market, ticker))
        assert (
            rows["traded_shares"].iloc[0] == bought and (rows["traded_shares"].iloc[1:] == 0).all()
        )
        assert rows["fees"].sum() == pytest.approx(commission, abs=1e-9)
        final = cash + shares * window["close"].iloc[-1]
        assert rows["equity"].iloc[-1] == pytest.approx(final, rel=1e-12)
        checked += 1
        if (market, ticker) in split_tickers:
            continue
        # without an event: the ticker's return from the filled open, on the invested share,
        # less one commission (the interest on the cash left is less than a lot's worth times
        # the rates)
        invested = shares * open_price / 1e6
        assert invested > 1 - (lot * open_price + commission) / 1e6 - rf[0]  # all but a lot
        price_return = window["close"].iloc[-1] / open_price - 1
        uninvested = 1e6 * (1 - invested) - commission
        interest = 1e6 * rf[0] + (uninvested + 1e6 * rf[0]) * (np.prod(1 + rf[1:]) - 1)
        assert (final - interest) / 1e6 - 1 == pytest.approx(
            invested * price_return - commission / 1e6, abs=1e-9
        )
    assert checked == 28 and split_tickers  # the sample has events in the window


def test_backtest_names_an_arm_without_decisions(demo_run, capsys):
    layout, _ = demo_run
    code = main(["--data-dir", str(layout.data_dir), "backtest", "--arm", "qwen__free"])
    assert code == 1
    err = capsys.readouterr().err
    assert "no decisions for arm(s) qwen__free" in err and "reference__free" in err


# ----------------------------------------------------------------------------- windows

LONG = ("2025-11-03", "2025-11-14")  # reference__free and reference__strict: 10 sessions
SHORT = ("2025-11-13", "2025-11-14")  # reference__guided: two sessions (Thu, Fri)


def _portfolio(layout: DataLayout) -> pd.DataFrame:
    return _query(
        layout,
        "select * from backtest_metrics where ticker = '__portfolio__' order by market, arm",
    ).set_index(["market", "arm"])


def _result_files(layout: DataLayout) -> list[str]:
    root = layout.landing_dir / "backtest"
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.parquet"))


@pytest.fixture(scope="module")
def backtested(built_sample, tmp_path_factory: pytest.TempPathFactory):
    """The sample with two arms deciding on LONG and one on SHORT (U.S. only), backtested once
    with every baseline: (the layout, what the backtest printed)."""
    layout = DataLayout(tmp_path_factory.mktemp("windows") / "data")
    shutil.copytree(built_sample.data_dir, layout.data_dir)
    common = ["--data-dir", str(layout.data_dir)]
    for arms, (start, end) in (
        (["reference__free", "reference__strict"], LONG),
        (["reference__guided"], SHORT),
    ):
        chosen = [arg for arm in arms for arg in ("--arm", arm)]
        args = [*common, "infer", *chosen, "--start", start, "--end", end, "--market", "us"]
        assert main(args) == 0
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*common, "backtest"]) == 0
    return layout, printed.getvalue()


def test_a_two_day_arm_is_measured_over_two_days(backtested, tmp_path):
    layout, out = backtested
    metrics = _portfolio(layout)
    short = metrics.loc[("us", "reference__guided")]
    assert [str(short["window_start"].date()), str(short["window_end"].date())] == list(SHORT)
    assert short["n_sessions"] == 2
    days = _query(
        layout,
        "select distinct date from backtest_daily where arm = 'reference__guided' order by date",
    )["date"]
    assert [str(day.date()) for day in days] == list(SHORT)
    # the others keep their own, longer window; the baselines span the run's arms
    for arm in ("reference__free", "reference__strict", "buy_and_hold"):
        assert metrics.loc[("us", arm), "n_sessions"] == 10, arm
    # compared with holding the same tickers over its two days, not over the others' window
    assert short["excess_return"] == pytest.approx(
        short["total_return"] - short["buy_and_hold_return"], abs=1e-12
    )
    ten_days = metrics.loc[("us", "buy_and_hold"), "total_return"]
    assert abs(short["buy_and_hold_return"] - ten_days) > 1e-4
    # ... which is what the buy_and_hold baseline backtested over those two days returns
    copy = DataLayout(tmp_path / "data")
    shutil.copytree(layout.data_dir, copy.data_dir)
    args = ["--data-dir", str(copy.data_dir), "backtest", "--market", "us"]
    args += ["--baseline", "buy_and_hold", "--start", SHORT[0], "--end", SHORT[1]]
    assert main(args) == 0
    held = _portfolio(copy).loc[("us", "buy_and_hold")]
    assert held["n_sessions"] == 2
    assert held["total_return"] == pytest.approx(short["buy_and_hold_return"], abs=1e-12)
    # the alignment tax against the Free arm is taken over the two sessions both have
    tax_window = [str(short[f"alignment_tax_{end}"].date()) for end in ("start", "end")]
    assert tax_window == list(SHORT)
    strict = metrics.loc[("us", "reference__strict")]
    assert [str(strict[f"alignment_tax_{end}"].date()) for end in ("start", "end")] == list(LONG)
    # the printed table shows each window and says that they differ
    line = next(
        line for line in out.splitlines() if line.split()[:2] == ["us", "reference__guided"]
    )
    assert line.split()[2:4] == [f"{SHORT[0]}..{SHORT[1]}", "2"]
    assert "us: the arms' windows differ" in out and "cn: the arms' windows differ" not in out


def test_a_filtered_backtest_keeps_the_other_arms(backtested, tmp_path, capsys):
    source, _ = backtested
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(source.data_dir, layout.data_dir)
    before, files = _portfolio(layout), _result_files(layout)
    daily_before = _query(layout, "select * from backtest_daily order by all")
    # the single files of an earlier version: removed, and said so
    for name in ("sleeves", "round_trips", "arms"):
        layout.backtest_file(name).write_bytes(b"stale")
    args = ["--data-dir", str(layout.data_dir), "backtest", "--market", "us"]
    args += ["--arm", "reference__strict", "--baseline", "buy_and_hold", "--start", "2025-11-10"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "removed 3 backtest file(s) of an earlier version" in out
    assert not any(layout.backtest_file(name).exists() for name in ("sleeves", "round_trips"))
    after = _portfolio(layout)
    assert _result_files(layout) == files
    named = [("us", "reference__strict"), ("us", "buy_and_hold")]
    assert set(after.index) == set(before.index) and len(before) == 2 * 6 + 3
    # every other arm and market: the same rows, value for value
    pd.testing.assert_frame_equal(after.drop(index=named), before.drop(index=named))
    daily = _query(layout, "select * from backtest_daily order by all")
    others = ~(daily["market"].eq("us") & daily["arm"].isin(["reference__strict", "buy_and_hold"]))
    kept = ~(
        daily_before["market"].eq("us")
        & daily_before["arm"].isin(["reference__strict", "buy_and_hold"])
    )
    pd.testing.assert_frame_equal(
        daily[others].reset_index(drop=True), daily_before[kept].reset_index(drop=True)
    )
    # the named arms over the window asked for, shown
    for key in named:
        row = after.loc[key]
        assert str(row["window_start"].date()) == "2025-11-10" and row["n_sessions"] == 5, key
    assert before.loc[("us", "reference__strict"), "n_sessions"] == 10


# ----------------------------------------------------------------------------- total return


def test_a_split_and_a_dividend_leave_buy_and_hold_a_total_return(sample_copy):
    """A constructed event in the sample: one ticker splits 2-for-1 on 2025-11-06 and pays a
    10 % cash dividend on 2025-11-11, its raw prices moving as the events say. Buy-and-hold
    doubles its shares, is credited the dividend, and its equity is what a hand computation
    gives; no session loses half."""
    layout = sample_copy
    path = layout.raw_file("us", "prices")
    prices = pd.read_parquet(path)
    ticker = sorted(prices["ticker"].unique())[0]
    own = (prices["ticker"] == ticker).to_numpy()
    days = pd.to_datetime(prices["date"])
    split_day, dividend_day = pd.Timestamp("2025-11-06"), pd.Timestamp("2025-11-11")
    columns = ["open", "high", "low", "close"]
    prices.loc[own & (days >= split_day).to_numpy(), columns] /= 2.0
    before = prices[own & (days < dividend_day).to_numpy()].sort_values("date")
    dividend = round(0.1 * before["close"].iloc[-1], 2)
    prices.loc[own & (days >= dividend_day).to_numpy(), columns] -= dividend
    pq.write_table(pa.Table.from_pandas(prices, preserve_index=False), path)
    events = pd.DataFrame(
        {
            "market": "us",
            "ticker": [ticker, ticker],
            "ex_date": [split_day.date(), dividend_day.date()],
            "split_ratio": [2.0, 1.0],
            "cash_dividend": [0.0, dividend],
            "announced_at": pd.Series([None, None], dtype="datetime64[us, UTC]"),
        }
    )
    pq.write_table(
        pa.Table.from_pandas(events, preserve_index=False),
        layout.raw_file("us", "corporate_actions"),
    )
    args = ["--data-dir", str(layout.data_dir), "backtest", "--market", "us"]
    args += ["--baseline", "buy_and_hold", "--start", LONG[0], "--end", LONG[1]]
    assert main(args) == 0
    rows = _query(
        layout,
        "select date, shares, cash, equity, daily_return, risk_free_return from backtest_daily "
        "where arm = 'buy_and_hold' and ticker = ? order by date",
        ticker,
    )
    rows["date"] = pd.to_datetime(rows["date"])
    bought = rows["shares"].iloc[0]
    assert bought > 0
    assert (rows.loc[rows["date"] >= split_day, "shares"] == 2 * bought).all()
    assert (rows.loc[rows["date"] < split_day, "shares"] == bought).all()
    assert rows["daily_return"].min() > -0.1  # neither the split nor the dividend is a loss
    # By hand: the cash left after the buy earns each session's rf (before the events), the
    # dividend is credited on its ex-date on the shares held then.
    cash = rows["cash"].iloc[0]
    for day, rate in zip(rows["date"].iloc[1:], rows["risk_free_return"].iloc[1:], strict=True):
        cash += cash * rate
        if day == dividend_day:
            cash += 2 * bought * dividend
    close = prices[own].set_index(pd.to_datetime(prices["date"][own]))["close"]
    final = cash + 2 * bought * close.loc[rows["date"].iloc[-1]]
    assert rows["equity"].iloc[-1] == pytest.approx(final, rel=1e-12)
    assert rows["cash"].iloc[-1] == pytest.approx(cash, rel=1e-12)
