"""The metric marts against empyrical-reloaded (and hand computations) on a fixture.

The fixture is a landing directory written by hand: sleeves with random daily returns, round
trips with chosen pnl, decisions with chosen statuses, a raw benchmark. dbt builds the
backtest models on it (`dbt build --select +tag:backtest`, as the Dagster asset does), and
every metric of `backtest_metrics` and `regime_metrics` is recomputed here independently.
One arm (qwen__guided) has a shorter window than the others: it is measured over its own
sessions and compared with its Free arm over their common window.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import empyrical
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from backtest.run import ARM_SCHEMA, TRIP_SCHEMA
from inference.engine import LLM_DECISIONS_SCHEMA
from ingest.contract import TABLES
from ingest.layout import DataLayout
from ingest.load import SESSIONS_SCHEMA

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt"
DBT = str(Path(sys.executable).with_name("dbt"))
TOLERANCE = 1e-9
CAPITAL = 1_000_000.0
MODEL = "Qwen/Qwen3.5-35B-A3B"  # in the models seed: 35 B total, 3 B active
# A 243-session market (cn: its sessions a year come from the calendar, CALENDAR below) with a
# daily risk-free series (RATES) that covers part of the sessions: the metrics use both.
MARKET = "cn"
PERIODS = 243
SESSIONS = pd.bdate_range("2025-01-02", periods=243)  # ends in December: 2025 is not full
# The ingested calendar: 2024 in full with 243 sessions (19 weekdays of February closed),
# then SESSIONS.
CALENDAR = pd.DatetimeIndex(
    [
        *[
            day
            for day in pd.bdate_range("2024-01-01", "2024-12-31")
            if not (day.month == 2 and day.day <= 27)
        ],
        *SESSIONS,
    ]
)
# The daily series: annual rates from March to July, then none (the last one holds, as of
# each session); before March the seed's constant CN rate.
RATES = pd.DataFrame({"date": pd.bdate_range("2025-03-03", "2025-07-31")})
RATES["annual_rate"] = 0.018 + 0.004 * np.sin(np.arange(len(RATES)) / 9)
CN_CONSTANT_RATE = 0.02
TICKERS = ("AAA", "BBB", "CCC")  # CCC never trades: all returns 0
ARMS = {
    # arm: (mode, kind, drift of the daily returns, first session of its window)
    "qwen__free": ("free", "llm", 0.0004, 0),
    "qwen__strict": ("strict", "llm", 0.0001, 0),
    "qwen__guided": ("guided", "llm", 0.0002, 183),  # the last 60 sessions only
    "buy_and_hold": ("baseline", "baseline", 0.0015, 0),
}
# Round trips of AAA per arm: (net pnl, return), spread over the arm's window. qwen__free wins
# 7 of 10 small and loses 3 large, and trails holding at its exposure: the win-rate trap;
# qwen__guided is its mirror (3 large wins, 7 small losses).
SMALL_WIN, LARGE_LOSS = (100.0, 0.01), (-500.0, -0.05)
TRIPS = {
    "qwen__free": [SMALL_WIN] * 5 + [LARGE_LOSS] + [SMALL_WIN] * 2 + [LARGE_LOSS] * 2,
    "qwen__strict": [(400.0, 0.04), (-100.0, -0.01), (-50.0, -0.005), (0.0, 0.0)],
    "qwen__guided": [(-100.0, -0.01)] * 5
    + [(500.0, 0.05)]
    + [(-100.0, -0.01)] * 2
    + [(500.0, 0.05)] * 2,
}
# The rules that fire on the snapshot of session i (pit_snapshots.signals): S1's entry every
# tenth session, S3's exit five sessions later; no other rule ever fires.
SIGNALS = tuple(f"s{n}_{side}" for n in range(1, 5) for side in ("entry", "exit"))


def _fires(index: int) -> dict[str, bool]:
    return {name: False for name in SIGNALS} | {
        "s1_entry": index % 10 == 0,
        "s3_exit": index % 10 == 5,
    }


def _benchmark() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    dates = pd.bdate_range(end=SESSIONS[-1], periods=len(SESSIONS) + 1)  # one session before
    closes = 3000 * np.cumprod(1 + rng.normal(0.0004, 0.01, len(dates)))
    return pd.DataFrame({"market": MARKET, "date": dates.date, "close": closes, "kind": "price"})


def _risk_free() -> np.ndarray:
    """Each session's risk-free return, computed here as int_risk_free_daily's rule says:
    the series' latest rate on or before the session, else the constant, over P sessions."""
    sessions = pd.DataFrame({"date": SESSIONS})
    annual = pd.merge_asof(sessions, RATES, on="date")["annual_rate"].fillna(CN_CONSTANT_RATE)
    return (1 + annual.to_numpy()) ** (1 / PERIODS) - 1


RISK_FREE = _risk_free()


def _window(arm: str) -> slice:
    """The positions of the arm's sessions in SESSIONS."""
    return slice(ARMS[arm][3], None)


def _sleeves(benchmark_returns: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    frames = []
    for arm, (_mode, _kind, drift, _first) in ARMS.items():
        sessions = SESSIONS[_window(arm)]
        for ticker in TICKERS:
            if ticker == "CCC":
                returns = np.zeros(len(sessions))
            else:
                noise = rng.normal(0, 0.012, len(sessions))
                returns = drift + 0.8 * benchmark_returns[_window(arm)] + noise
            equity = CAPITAL * np.cumprod(1 + returns)
            exposure = 0.0 if ticker == "CCC" else rng.uniform(0, 1, len(sessions))
            frames.append(
                pd.DataFrame(
                    {
                        "arm": arm,
                        "market": MARKET,
                        "ticker": ticker,
                        "date": sessions.date,
                        "target_exposure": np.nan,
                        "has_bar": True,
                        "shares": 0.0,
                        "fill_price": np.nan,
                        "traded_shares": 0.0,
                        "traded_value": 0.0
                        if ticker == "CCC"
                        else rng.uniform(0, 5e4, len(sessions)),
                        "limit_blocked": False,
                        "fees": 0.0 if ticker == "CCC" else rng.uniform(0, 10, len(sessions)),
                        "position_value": exposure * equity,
                        "cash": (1 - exposure) * equity,
                        "equity": equity,
                        "exposure": exposure,
                        "daily_return": returns,
                        "initial_capital": CAPITAL,
                    }
                )
            )
    sleeves = pd.concat(frames, ignore_index=True)
    # Holding over each arm's window: here the buy_and_hold sleeve's returns on the arm's
    # sessions, compounded from the capital (the simulation buys at the window's first bar).
    held = sleeves[sleeves["arm"] == "buy_and_hold"].set_index(["ticker", "date"])
    keys = pd.MultiIndex.from_frame(sleeves[["ticker", "date"]])
    sleeves["hold_daily_return"] = held["daily_return"].reindex(keys).to_numpy()
    growth = (1 + sleeves["hold_daily_return"]).groupby([sleeves["arm"], sleeves["ticker"]])
    sleeves["hold_equity"] = CAPITAL * growth.cumprod()
    return sleeves


def _trip_sessions(arm: str, index: int) -> tuple[int, int]:
    """Entry and exit positions in SESSIONS of the arm's index-th trip, inside its window."""
    first, n_trips = ARMS[arm][3], len(TRIPS[arm])
    step = (len(SESSIONS) - first - 10) // n_trips
    entry = first + 5 + step * index
    return entry, entry + step // 2


def _trips() -> pd.DataFrame:
    rows = []
    for arm, trips in TRIPS.items():
        for index, (pnl, ret) in enumerate(trips):
            entry, exit_ = _trip_sessions(arm, index)
            rows.append(
                {
                    "arm": arm,
                    "market": MARKET,
                    "ticker": "AAA",
                    "entry_date": SESSIONS[entry].date(),
                    "exit_date": SESSIONS[exit_].date(),
                    "holding_sessions": exit_ - entry,
                    "n_fills": 2,
                    "entry_value": pnl / ret if ret else 1000.0,
                    "exit_value": (pnl / ret if ret else 1000.0) + pnl,
                    "net_pnl": pnl,
                    "return": ret,
                    "win": pnl > 0,
                }
            )
    return pd.DataFrame(rows)


def _proposal(ticker: str, index: int, mode: str) -> tuple[str, float, float, str | None]:
    """(proposed action, proposed target, previous exposure, cited rule) on session index.

    Free: always hold. Otherwise AAA always holds (no fidelity); BBB buys on every firing S1
    entry and sells on every firing S3 exit, citing them (fidelity 1); CCC buys on the firing
    entries but sells two sessions later citing S3, whose exit does not fire then: half its
    trades go against the rules (fidelity about 0.5).
    """
    phase = index % 10
    if mode == "free" or ticker == "AAA":
        return "hold", 0.0, 0.0, None
    if phase == 0:
        return "buy", 1.0, 0.0, "S1"
    if ticker == "BBB":
        if phase == 5:
            return "sell", 0.0, 1.0, "S3"
        return "hold", 1.0, 1.0 if phase < 5 else 0.0, None
    if phase == 2:
        return "sell", 0.0, 1.0, "S3"
    return "hold", 1.0, 1.0 if phase < 2 else 0.0, None


def _decisions(arm: str, mode: str) -> pa.Table:
    rng = np.random.default_rng(3 if mode == "free" else 4)
    rows = []
    # One decision before the window (index -1): it must not count.
    days = [date(2024, 12, 31), *SESSIONS.date]
    for index, day in enumerate(days, start=-1):
        for ticker in TICKERS:
            failed = rng.random() < 0.05
            action, target, previous, rule = _proposal(ticker, index, mode)
            rows.append(
                {
                    "arm": arm,
                    "model": MODEL,
                    "mode": mode,
                    "replicate": 0,
                    "market": MARKET,
                    "ticker": ticker,
                    "decision_date": day,
                    "action": None if failed else action,
                    "target_exposure": previous if failed else target,
                    "previous_exposure": previous,
                    "proposed_action": None if failed else action,
                    "proposed_target_exposure": None if failed else target,
                    "rule": None if failed else rule,
                    "confidence": None if failed else float(rng.uniform(0.2, 0.9)),
                    "parse_status": "failed" if failed else "ok",
                    "guardrail_status": (
                        ("overridden" if failed or rng.random() < 0.2 else "pass")
                        if mode == "strict"
                        else "not_applicable"
                    ),
                    "is_llm": True,
                }
            )
    return pa.Table.from_pylist(rows, schema=LLM_DECISIONS_SCHEMA)


def _pit_snapshots() -> pd.DataFrame:
    """The signals of pit_snapshots (the only columns the backtest marts read)."""
    return pd.DataFrame(
        [
            {"market": MARKET, "ticker": ticker, "decision_date": day, **_fires(index)}
            for index, day in enumerate(SESSIONS.date)
            for ticker in TICKERS
        ]
    )


def _arms() -> pa.Table:
    rows = [
        {
            "arm": arm,
            "market": MARKET,
            "model": MODEL if kind == "llm" else arm,
            "mode": mode,
            "attitude": None,
            "replicate": 0,
            "is_llm": kind == "llm",
            "arm_kind": kind,
            "window_start": SESSIONS[_window(arm)][0].date(),
            "window_end": SESSIONS[-1].date(),
            "n_sessions": len(SESSIONS[_window(arm)]),
            "n_tickers": len(TICKERS),
            "n_decisions": 0,
            "n_untradable_decisions": 0,
            "fill_at": "open",
            "random_seed": 0,
            "initial_capital": CAPITAL,
        }
        for arm, (mode, kind, _drift, _first) in ARMS.items()
    ]
    return pa.Table.from_pylist(rows, schema=ARM_SCHEMA)


@pytest.fixture(scope="module")
def marts(tmp_path_factory: pytest.TempPathFactory):
    layout = DataLayout(tmp_path_factory.mktemp("metrics") / "data")
    benchmark = _benchmark()
    raw = layout.raw_file(MARKET, "benchmark")
    raw.parent.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pandas(
            benchmark, schema=TABLES["benchmark"].arrow_schema(), preserve_index=False
        ),
        raw,
    )
    calendar = pd.DataFrame({"market": MARKET, "session_date": CALENDAR.date})
    pq.write_table(
        pa.Table.from_pandas(calendar, schema=SESSIONS_SCHEMA, preserve_index=False),
        layout.raw_file(MARKET, "sessions"),
    )
    rates = RATES.assign(market=MARKET, date=RATES["date"].dt.date)
    pq.write_table(
        pa.Table.from_pandas(rates[["market", "date", "annual_rate"]], preserve_index=False),
        layout.raw_file(MARKET, "risk_free"),
    )
    benchmark_returns = benchmark["close"].pct_change().to_numpy()[1:]
    sleeves = _sleeves(benchmark_returns)
    tables = {
        "sleeves": pa.Table.from_pandas(sleeves, preserve_index=False),
        "round_trips": pa.Table.from_pandas(_trips(), schema=TRIP_SCHEMA, preserve_index=False),
        "arms": _arms(),
    }
    for name, table in tables.items():
        for arm in ARMS:  # one file per arm and market, as backtest.run writes them
            path = layout.backtest_result_file(name, arm, MARKET)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.filter(pc.equal(table["arm"], arm)), path)
        # an earlier version's single file (here a stray arm) is not read
        stale = table.slice(0, 1).set_column(0, "arm", pa.array(["stale_arm"]))
        pq.write_table(stale, layout.backtest_file(name))
    for arm, (mode, kind, _drift, _first) in ARMS.items():
        if kind == "llm":
            path = (
                layout.landing_dir / "llm_decisions" / f"arm={arm}" / "market=all" / "all.parquet"
            )
            path.parent.mkdir(parents=True)
            pq.write_table(_decisions(arm, mode), path)
    # pit_snapshots as the warehouse build leaves it (its signals only): dbt builds the
    # backtest models and their other parents, not the snapshot models.
    layout.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(layout.warehouse)) as connection:
        connection.register("signals", _pit_snapshots())
        fields = ", ".join(f"{name} := {name}" for name in SIGNALS)
        connection.sql(
            "create table pit_snapshots as select market, ticker, decision_date, "
            f"struct_pack({fields}) as signals from signals"
        )
    env = {
        **os.environ,
        "STRAT_LLM_DATA": str(layout.data_dir),
        "STRAT_LLM_WAREHOUSE": str(layout.warehouse),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_LOG_PATH": str(layout.data_dir / "dbt_logs"),
    }
    paths = ["--profiles-dir", ".", "--target-path", str(layout.data_dir / "dbt_target")]
    paths += ["--log-path", str(layout.data_dir / "dbt_target")]  # nothing in the repo's dbt/
    # The parents the snapshot models share with the backtest ones (the market conventions read
    # market_rules and the calendar) first, then the backtest models without the snapshot ones.
    shared = ["--select", "market_rules", "stg_raw__sessions"]
    backtest = ["--select", "+tag:backtest", "regime_episodes", "--exclude", "+pit_snapshots"]
    for selection in (shared, backtest):
        command = [DBT, "build", *selection, *paths]
        result = subprocess.run(command, cwd=DBT_DIR, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-5000:]
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        tables = {
            name: connection.sql(f"select * from {name}").df()
            for name in (
                "backtest_daily",
                "backtest_metrics",
                "regime_metrics",
                "regime_labels",
                "regime_episodes",
                "regime_sensitivity",
            )
        }
    return sleeves, benchmark_returns, tables


def _series(sleeves: pd.DataFrame, arm: str, ticker: str) -> np.ndarray:
    if ticker == "__portfolio__":
        equity = sleeves[sleeves["arm"] == arm].groupby("date")["equity"].sum().to_numpy()
        return np.diff(np.concatenate([[CAPITAL * len(TICKERS)], equity])) / np.concatenate(
            [[CAPITAL * len(TICKERS)], equity[:-1]]
        )
    rows = sleeves[(sleeves["arm"] == arm) & (sleeves["ticker"] == ticker)].sort_values("date")
    return rows["daily_return"].to_numpy()


def _held(sleeves: pd.DataFrame, arm: str, ticker: str) -> np.ndarray:
    """Daily returns of holding the arm's sleeve (or portfolio) over the arm's window."""
    held = sleeves.drop(columns=["equity", "daily_return"]).rename(
        columns={"hold_equity": "equity", "hold_daily_return": "daily_return"}
    )
    return _series(held, arm, ticker)


def _close(actual: object, expected: float) -> bool:
    if actual is None or (isinstance(actual, float) and np.isnan(actual)):
        return not np.isfinite(expected)
    return abs(float(actual) - expected) <= TOLERANCE * max(1.0, abs(expected))


def _metric_row(metrics: pd.DataFrame, arm: str, ticker: str) -> pd.Series:
    [row] = metrics[(metrics["arm"] == arm) & (metrics["ticker"] == ticker)].to_dict("records")
    return pd.Series(row)


@pytest.mark.parametrize("arm", list(ARMS))
@pytest.mark.parametrize("ticker", [*TICKERS, "__portfolio__"])
def test_return_metrics_equal_empyrical(marts, arm: str, ticker: str):
    sleeves, benchmark_returns, tables = marts
    row = _metric_row(tables["backtest_metrics"], arm, ticker)
    returns = _series(sleeves, arm, ticker)
    rf = RISK_FREE[_window(arm)]
    # The CAPM on excess returns: empyrical's alpha and beta of r - rf on b - rf.
    alpha, beta = empyrical.alpha_beta_aligned(
        returns - rf, benchmark_returns[_window(arm)] - rf, annualization=PERIODS
    )
    expected = {
        "total_return": empyrical.cum_returns_final(returns),
        "annualized_return": empyrical.annual_return(returns, annualization=PERIODS),
        "annualized_volatility": empyrical.annual_volatility(returns, annualization=PERIODS),
        "sharpe": empyrical.sharpe_ratio(returns, risk_free=rf, annualization=PERIODS),
        "sortino": empyrical.sortino_ratio(returns, required_return=rf, annualization=PERIODS),
        "max_drawdown": empyrical.max_drawdown(returns),
        "calmar": empyrical.calmar_ratio(returns, annualization=PERIODS),
        "alpha": alpha,
        "beta": beta,
    }
    wrong = {
        name: (row[name], value) for name, value in expected.items() if not _close(row[name], value)
    }
    assert not wrong, wrong
    assert row["n_sessions"] == len(SESSIONS[_window(arm)]) == len(returns)
    assert pd.Timestamp(row["window_start"]) == SESSIONS[_window(arm)][0]


def test_only_the_per_arm_result_files_are_read(marts):
    """The single file of an earlier version (here naming a stray arm) is ignored."""
    _, _, tables = marts
    for name in ("backtest_daily", "backtest_metrics", "regime_metrics"):
        assert set(tables[name]["arm"]) == set(ARMS), name


def test_the_zero_return_sleeve_has_undefined_ratios_not_infinities(marts):
    """qwen__guided's window lies after the daily series' last rate, which holds: a constant
    rf, so CCC's excess returns are all the same and its Sharpe is undefined (null)."""
    _, _, tables = marts
    row = _metric_row(tables["backtest_metrics"], "qwen__guided", "CCC")
    assert (
        row["total_return"] == 0 and row["max_drawdown"] == 0 and row["annualized_volatility"] == 0
    )
    for name in ("sharpe", "calmar"):
        assert pd.isna(row[name]), name
    # Below rf on every session: the Sortino ratio is -sqrt(P) (all the mean is downside).
    assert _close(row["sortino"], -np.sqrt(PERIODS))


def test_risk_free_and_sessions_per_year_come_from_the_market(marts):
    _, _, tables = marts
    daily = tables["backtest_daily"]
    rows = daily[(daily["arm"] == "qwen__free") & (daily["ticker"] == "AAA")].sort_values("date")
    np.testing.assert_allclose(rows["risk_free_return"], RISK_FREE, rtol=1e-12)
    assert (daily["sessions_per_year"] == PERIODS).all()
    # constant before the series starts, the series' rate after
    assert RISK_FREE[0] == pytest.approx((1 + CN_CONSTANT_RATE) ** (1 / PERIODS) - 1)
    assert len(set(np.round(RISK_FREE, 15))) > 50
    for name in ("backtest_metrics", "regime_metrics"):
        assert (tables[name]["benchmark_kind"] == "price").all()


def test_portfolio_rows_are_the_sum_of_the_sleeves(marts):
    sleeves, _, tables = marts
    daily = tables["backtest_daily"]
    portfolio = daily[(daily["ticker"] == "__portfolio__") & (daily["arm"] == "qwen__strict")]
    expected = (
        sleeves[sleeves["arm"] == "qwen__strict"]
        .groupby("date")[["equity", "cash", "position_value", "fees"]]
        .sum()
    )
    portfolio = portfolio.set_index(pd.to_datetime(portfolio["date"]).dt.date).sort_index()
    for column in expected.columns:
        np.testing.assert_allclose(portfolio[column], expected[column], rtol=1e-12)
    np.testing.assert_allclose(
        portfolio["exposure"], expected["position_value"] / expected["equity"], rtol=1e-12
    )


def test_trade_metrics_by_hand(marts):
    _, _, tables = marts
    metrics = tables["backtest_metrics"]
    free = _metric_row(metrics, "qwen__free", "AAA")
    # seven wins of 100 (1 %), three losses of 500 (-5 %)
    assert free["n_trades"] == 10
    assert _close(free["win_rate"], 0.7)
    assert _close(free["profit_factor"], 700 / 1500)
    assert _close(free["avg_win"], 0.01)
    assert _close(free["avg_loss"], -0.05)
    assert _close(free["payoff_ratio"], 0.2)
    strict = _metric_row(metrics, "qwen__strict", "AAA")
    # a trip at exactly 0 is neither a win nor a loss, but it is a trade
    assert strict["n_trades"] == 4
    assert _close(strict["win_rate"], 1 / 4)
    assert _close(strict["profit_factor"], 400 / 150)
    assert _close(strict["avg_loss"], -0.0075)
    # the portfolio counts every sleeve's trips; a sleeve without trips has none
    assert _metric_row(metrics, "qwen__free", "__portfolio__")["n_trades"] == 10
    no_trades = _metric_row(metrics, "qwen__free", "BBB")
    assert no_trades["n_trades"] == 0 and pd.isna(no_trades["win_rate"])


def test_turnover_exposure_and_excess_return_by_hand(marts):
    sleeves, _, tables = marts
    metrics = tables["backtest_metrics"]
    rows = sleeves[(sleeves["arm"] == "qwen__free") & (sleeves["ticker"] == "AAA")]
    row = _metric_row(metrics, "qwen__free", "AAA")
    turnover = rows["traded_value"].sum() / 2 / rows["equity"].mean() * PERIODS / len(rows)
    assert _close(row["turnover"], turnover)
    assert _close(row["avg_exposure"], rows["exposure"].mean())
    held = _metric_row(metrics, "buy_and_hold", "AAA")
    assert _close(row["excess_return"], row["total_return"] - held["total_return"])
    assert held["excess_return"] == 0


@pytest.mark.parametrize("ticker", ["AAA", "__portfolio__"])
def test_excess_return_holds_over_the_arms_own_window(marts, ticker: str):
    """The short arm is compared with holding over its own 60 sessions, not the whole span."""
    sleeves, _, tables = marts
    row = _metric_row(tables["backtest_metrics"], "qwen__guided", ticker)
    held = empyrical.cum_returns_final(_held(sleeves, "qwen__guided", ticker))
    assert len(_held(sleeves, "qwen__guided", ticker)) == 60
    assert _close(row["buy_and_hold_return"], held)
    assert _close(row["excess_return"], row["total_return"] - held)
    whole_span = _metric_row(tables["backtest_metrics"], "buy_and_hold", ticker)["total_return"]
    assert not _close(row["excess_return"], row["total_return"] - whole_span)


def test_decision_metrics_fidelity_and_alignment_tax(marts):
    _, _, tables = marts
    metrics = tables["backtest_metrics"]
    for arm, mode in (
        ("qwen__free", "free"),
        ("qwen__strict", "strict"),
        ("qwen__guided", "guided"),
    ):
        frame = _decisions(arm, mode).to_pandas()
        # the arm's window only
        frame = frame[frame["decision_date"] >= SESSIONS[_window(arm)][0].date()]
        for ticker in (*TICKERS, "__portfolio__"):
            rows = frame if ticker == "__portfolio__" else frame[frame["ticker"] == ticker]
            row = _metric_row(metrics, arm, ticker)
            assert row["n_decisions"] == len(rows)
            parsed = rows[rows["parse_status"] != "failed"]
            assert _close(row["confidence_std"], float(np.std(parsed["confidence"], ddof=1)))
            assert _close(
                row["parse_failure_rate"], float((rows["parse_status"] == "failed").mean())
            )
            if mode == "free":
                assert pd.isna(row["fidelity"]) and pd.isna(row["fidelity_acted"])
    for ticker in (*TICKERS, "__portfolio__"):
        free = _metric_row(metrics, "qwen__free", ticker)
        strict = _metric_row(metrics, "qwen__strict", ticker)
        assert _close(strict["alignment_tax"], free["alpha"] - strict["alpha"])
        assert pd.Timestamp(strict["alignment_tax_start"]) == SESSIONS[0]
        assert free["alignment_tax"] == 0
        assert pd.isna(_metric_row(metrics, "buy_and_hold", ticker)["alignment_tax"])
    assert (metrics[metrics["arm_kind"] == "llm"]["params_total_b"] == 35).all()


def _fidelity_by_hand(rows: pd.DataFrame) -> dict[str, float | int | None]:
    """Fidelity v2 recomputed from the decision rows and the session's signals."""
    parsed = rows[rows["parse_status"] != "failed"]
    index = {day: i for i, day in enumerate(SESSIONS.date)}
    changing = faithful = firing = acted = 0
    for row in parsed.itertuples():
        fires = _fires(index[row.decision_date])
        previous, target = row.previous_exposure, row.proposed_target_exposure
        proposed = {"buy": max(previous, target), "sell": min(previous, target)}.get(
            row.proposed_action, previous
        )
        raises, lowers = proposed > previous, proposed < previous
        rule = row.rule.lower() if isinstance(row.rule, str) else ""
        changing += raises or lowers
        faithful += (raises and fires.get(f"{rule}_entry", False)) or (
            lowers and fires.get(f"{rule}_exit", False)
        )
        entry_open = any(fires[f"s{n}_entry"] for n in range(1, 5)) and previous < 1
        exit_open = any(fires[f"s{n}_exit"] for n in range(1, 5)) and previous > 0
        firing += entry_open or exit_open
        acted += (entry_open and raises) or (exit_open and lowers)
    return {
        "fidelity": faithful / changing if changing else None,
        "fidelity_acted": acted / firing if firing else None,
        "n_changing_proposals": changing,
        "n_abstentions": len(parsed) - changing,
        "n_firing_days": firing,
    }


@pytest.mark.parametrize("arm", ["qwen__strict", "qwen__guided"])
def test_fidelity_reads_the_proposal_against_the_rules_that_fired(marts, arm: str):
    """Always holding has no fidelity (null), not 1; buying only on firing entries and selling
    on firing exits is 1; trading against the rules half the time is about 0.5. Guided arms
    are measured the same way, as a reference."""
    _, _, tables = marts
    frame = _decisions(arm, ARMS[arm][0]).to_pandas()
    frame = frame[frame["decision_date"] >= SESSIONS[_window(arm)][0].date()]
    for ticker in (*TICKERS, "__portfolio__"):
        rows = frame if ticker == "__portfolio__" else frame[frame["ticker"] == ticker]
        row = _metric_row(tables["backtest_metrics"], arm, ticker)
        expected = _fidelity_by_hand(rows)
        for name, value in expected.items():
            assert _close(row[name], np.nan if value is None else value), (ticker, name)
    row = functools.partial(_metric_row, tables["backtest_metrics"], arm)
    hold, follow, against = row("AAA"), row("BBB"), row("CCC")
    assert pd.isna(hold["fidelity"]) and hold["n_changing_proposals"] == 0
    assert hold["fidelity_acted"] == 0 and hold["n_firing_days"] > 0
    assert follow["fidelity"] == 1.0 and follow["fidelity_acted"] == 1.0
    assert 0.4 < against["fidelity"] < 0.6
    # parse failures are apart: neither proposals nor abstentions
    parsed = frame[(frame["ticker"] == "BBB") & (frame["parse_status"] != "failed")]
    assert follow["n_changing_proposals"] + follow["n_abstentions"] == len(parsed)
    assert follow["parse_failure_rate"] > 0


@pytest.mark.parametrize("ticker", ["AAA", "BBB", "__portfolio__"])
def test_alignment_tax_of_a_short_arm_uses_the_common_window(marts, ticker: str):
    """qwen__guided decided on the last 60 sessions only: the Free arm's alpha is taken over
    those 60 sessions too, and the table names them."""
    sleeves, benchmark_returns, tables = marts
    metrics = tables["backtest_metrics"]
    guided = _metric_row(metrics, "qwen__guided", ticker)
    free = _metric_row(metrics, "qwen__free", ticker)
    common = _window("qwen__guided")
    rf, benchmark = RISK_FREE[common], benchmark_returns[common]
    free_alpha, _ = empyrical.alpha_beta_aligned(
        _series(sleeves, "qwen__free", ticker)[common] - rf, benchmark - rf, annualization=PERIODS
    )
    own_alpha, _ = empyrical.alpha_beta_aligned(
        _series(sleeves, "qwen__guided", ticker) - rf, benchmark - rf, annualization=PERIODS
    )
    assert _close(guided["alignment_tax"], free_alpha - own_alpha)
    assert not _close(guided["alignment_tax"], free["alpha"] - guided["alpha"])
    window = [pd.Timestamp(guided[name]) for name in ("alignment_tax_start", "alignment_tax_end")]
    assert window == [SESSIONS[common][0], SESSIONS[-1]]
    assert pd.Timestamp(guided["window_start"]) == SESSIONS[common][0]
    assert guided["n_sessions"] == 60


def test_win_rate_trap_follows_its_rule(marts):
    sleeves, _, tables = marts
    metrics = tables["backtest_metrics"]
    for row in metrics.itertuples():
        matched = row.avg_exposure * row.buy_and_hold_return
        assert _close(row.exposure_matched_return, matched)
        expected = (
            row.n_trades >= 5
            and row.win_rate >= 0.6
            and row.payoff_ratio < 1
            and row.total_return < matched
        )
        assert row.win_rate_trap == bool(expected), (row.arm, row.ticker)
    trapped = metrics[metrics["win_rate_trap"]]
    # 70 % small wins and a few large losses, below holding at its exposure: a trap ...
    free = _metric_row(metrics, "qwen__free", "AAA")
    rows = sleeves[(sleeves["arm"] == "qwen__free") & (sleeves["ticker"] == "AAA")]
    held = empyrical.cum_returns_final(_held(sleeves, "qwen__free", "AAA"))
    assert _close(free["exposure_matched_return"], rows["exposure"].mean() * held)
    assert free["total_return"] < free["exposure_matched_return"]
    assert set(zip(trapped["arm"], trapped["ticker"], strict=True)) == {
        ("qwen__free", "AAA"),
        ("qwen__free", "__portfolio__"),
    }
    # ... its mirror (30 % large wins, small losses) is not; nor 4 trips at a 25 % win rate
    assert _close(_metric_row(metrics, "qwen__guided", "AAA")["win_rate"], 0.3)
    assert not _metric_row(metrics, "qwen__guided", "AAA")["win_rate_trap"]
    assert not _metric_row(metrics, "qwen__strict", "AAA")["win_rate_trap"]


def _labels(window_sessions: int, trend_pct: float) -> pd.DataFrame:
    """The regime rule by hand: the benchmark's return over a window centred on each session
    (clipped at the ends) against +-trend_pct; an episode per run of one regime."""
    closes = _benchmark()["close"].to_numpy()
    half, last = window_sessions // 2, len(closes) - 1
    window_return = np.array(
        [closes[min(j + half, last)] / closes[max(j - half, 0)] - 1 for j in range(len(closes))]
    )
    regime = np.where(
        window_return > trend_pct / 100,
        "uptrend",
        np.where(window_return < -trend_pct / 100, "downtrend", "sideways"),
    )
    labels = pd.DataFrame({"regime": regime}, index=_benchmark()["date"])
    labels["episode"] = (labels["regime"] != labels["regime"].shift()).cumsum()
    return labels


def _regime_expectations(sleeves: pd.DataFrame, arm: str, labels: pd.DataFrame) -> pd.DataFrame:
    """Per regime of the arm's window: the pooled metrics, drawdown within each episode."""
    sessions = SESSIONS[_window(arm)].date
    returns = pd.Series(_series(sleeves, arm, "__portfolio__"), index=sessions)
    held = pd.Series(_held(sleeves, arm, "__portfolio__"), index=sessions)
    frame = labels.reindex(sessions).assign(returns=returns, held=held)
    assert frame["regime"].notna().all()
    rows = {}
    for regime, part in frame.groupby("regime"):
        drawdowns = [
            empyrical.max_drawdown(e["returns"].to_numpy()) for _, e in part.groupby("episode")
        ]
        rows[regime] = {
            "n_sessions": len(part),
            "n_episodes": part["episode"].nunique(),
            "total_return": empyrical.cum_returns_final(part["returns"].to_numpy()),
            "max_drawdown": min(drawdowns),
            "excess_return": empyrical.cum_returns_final(part["returns"].to_numpy())
            - empyrical.cum_returns_final(part["held"].to_numpy()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def test_regime_labels_and_episodes_follow_the_rule(marts):
    _, _, tables = marts
    labels = tables["regime_labels"].set_index(
        pd.to_datetime(tables["regime_labels"]["date"]).dt.date
    )
    expected = _labels(60, 8)
    assert (labels["regime"].reindex(expected.index) == expected["regime"]).all()
    assert (labels["episode"].reindex(expected.index) == expected["episode"]).all()
    assert expected["episode"].max() > 2  # the fixture has several episodes
    episodes = tables["regime_episodes"].set_index("episode")
    sizes = expected.groupby("episode").size()
    assert episodes["n_sessions"].sort_index().tolist() == sizes.tolist()


@pytest.mark.parametrize("arm", list(ARMS))
def test_regime_metrics_compound_each_regime_like_empyrical(marts, arm: str):
    """Order-free metrics pool a regime's sessions; the drawdown is the worst within one
    episode, never across the sessions of another regime."""
    sleeves, benchmark_returns, tables = marts
    sessions = SESSIONS[_window(arm)].date
    benchmark = pd.Series(benchmark_returns[_window(arm)], index=sessions)
    labels = _labels(60, 8)
    returns = pd.Series(_series(sleeves, arm, "__portfolio__"), index=sessions)
    risk_free = pd.Series(RISK_FREE[_window(arm)], index=sessions)
    regimes = labels["regime"].reindex(returns.index)
    metrics = tables["regime_metrics"]
    rows = metrics[metrics["arm"] == arm].set_index("regime")
    assert set(rows.index) == set(regimes)
    expected = _regime_expectations(sleeves, arm, labels)
    trips = pd.DataFrame(TRIPS.get(arm, []), columns=["pnl", "ret"])
    entries = [SESSIONS[_trip_sessions(arm, i)[0]].date() for i in range(len(trips))]
    trips["regime"] = [regimes.get(day) for day in entries]
    spliced = False
    for regime, row in rows.iterrows():
        subset = returns[regimes == regime].to_numpy()
        rf = risk_free[regimes == regime].to_numpy()
        for name, value in expected.loc[regime].items():
            assert _close(row[name], value), (regime, name)
        spliced |= not _close(row["max_drawdown"], empyrical.max_drawdown(subset))
        assert _close(
            row["sharpe"], empyrical.sharpe_ratio(subset, risk_free=rf, annualization=PERIODS)
        )
        assert _close(
            row["annualized_volatility"], empyrical.annual_volatility(subset, annualization=PERIODS)
        )
        calmar = empyrical.annual_return(subset, annualization=PERIODS) / abs(row["max_drawdown"])
        assert _close(row["calmar"], calmar if row["max_drawdown"] < 0 else np.nan)
        alpha, beta = empyrical.alpha_beta_aligned(
            subset - rf, benchmark[regimes == regime].to_numpy() - rf, annualization=PERIODS
        )
        assert _close(row["alpha"], alpha) and _close(row["beta"], beta)
        assert row["n_trades"] == (trips["regime"] == regime).sum()
    if arm != "qwen__guided":  # the full window holds several episodes of one regime
        assert (expected["n_episodes"] > 1).any()
    if arm == "qwen__free":  # and here the spliced series would draw down differently
        assert spliced


@pytest.mark.parametrize("arm", list(ARMS))
def test_regime_sensitivity_relabels_with_each_choice(marts, arm: str):
    """The configured labelling (60 sessions, 8 %) and the two others (40/6, 90/10), each by
    the same rule; the configured one's rows are regime_metrics'."""
    sleeves, _, tables = marts
    table = tables["regime_sensitivity"]
    table = table[table["arm"] == arm]
    choices = {(60, 8), (40, 6), (90, 10)}
    assert (
        set(zip(table["regime_window_sessions"], table["regime_trend_pct"], strict=True)) == choices
    )
    for window_sessions, trend_pct in choices:
        rows = table[
            (table["regime_window_sessions"] == window_sessions)
            & (table["regime_trend_pct"] == trend_pct)
        ].set_index("regime")
        expected = _regime_expectations(sleeves, arm, _labels(window_sessions, trend_pct))
        assert set(rows.index) == set(expected.index), (window_sessions, trend_pct)
        for regime, values in expected.iterrows():
            for name, value in values.items():
                assert _close(rows.loc[regime, name], value), (window_sessions, regime, name)
    configured = table[table["regime_window_sessions"] == 60].set_index("regime")
    metrics = tables["regime_metrics"]
    metrics = metrics[metrics["arm"] == arm].set_index("regime")
    for name in ("n_sessions", "total_return", "max_drawdown", "sharpe", "excess_return"):
        assert np.allclose(configured[name], metrics.loc[configured.index, name], equal_nan=True)
