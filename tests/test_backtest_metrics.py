"""The metric marts against empyrical-reloaded (and hand computations) on a fixture.

The fixture is a landing directory written by hand: sleeves with random daily returns, round
trips with chosen pnl, decisions with chosen statuses, a raw benchmark. dbt builds the
backtest models on it (`dbt build --select +tag:backtest`, as the Dagster asset does), and
every metric of `backtest_metrics` and `regime_metrics` is recomputed here independently.
One arm (qwen__guided) has a shorter window than the others: it is measured over its own
sessions and compared with its Free arm over their common window.
"""

from __future__ import annotations

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
# Round trips of AAA per arm: (net pnl, return). qwen__free wins 5 of 6 and trails
# buy-and-hold: the win-rate trap.
TRIPS = {
    "qwen__free": [
        (100.0, 0.01),
        (50.0, 0.005),
        (-300.0, -0.03),
        (20.0, 0.002),
        (10.0, 0.001),
        (5.0, 0.0005),
    ],
    "qwen__strict": [(400.0, 0.04), (-100.0, -0.01), (-50.0, -0.005), (0.0, 0.0)],
}


def _benchmark() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    dates = pd.bdate_range(end=SESSIONS[-1], periods=len(SESSIONS) + 1)  # one session before
    closes = 3000 * np.cumprod(1 + rng.normal(0.0004, 0.01, len(dates)))
    return pd.DataFrame({"market": MARKET, "date": dates.date, "close": closes})


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


def _trips() -> pd.DataFrame:
    rows = []
    for arm, trips in TRIPS.items():
        for index, (pnl, ret) in enumerate(trips):
            entry = SESSIONS[10 + 40 * index].date()
            rows.append(
                {
                    "arm": arm,
                    "market": MARKET,
                    "ticker": "AAA",
                    "entry_date": entry,
                    "exit_date": SESSIONS[30 + 40 * index].date(),
                    "holding_sessions": 20,
                    "n_fills": 2,
                    "entry_value": pnl / ret if ret else 1000.0,
                    "exit_value": (pnl / ret if ret else 1000.0) + pnl,
                    "net_pnl": pnl,
                    "return": ret,
                    "win": pnl > 0,
                }
            )
    return pd.DataFrame(rows)


def _decisions(arm: str, mode: str) -> pa.Table:
    rng = np.random.default_rng(3 if mode == "free" else 4)
    rows = []
    # One decision before the window: it must not count.
    days = [date(2024, 12, 31), *SESSIONS.date]
    for day in days:
        for ticker in TICKERS:
            failed = rng.random() < 0.05
            rows.append(
                {
                    "arm": arm,
                    "model": MODEL,
                    "mode": mode,
                    "replicate": 0,
                    "market": MARKET,
                    "ticker": ticker,
                    "decision_date": day,
                    "action": "hold",
                    "target_exposure": 0.0,
                    "previous_exposure": 0.0,
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
    env = {
        **os.environ,
        "STRAT_LLM_DATA": str(layout.data_dir),
        "STRAT_LLM_WAREHOUSE": str(layout.warehouse),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_LOG_PATH": str(layout.data_dir / "dbt_logs"),
    }
    command = [DBT, "build", "--select", "+tag:backtest", "--profiles-dir", "."]
    command += ["--target-path", str(layout.data_dir / "dbt_target")]
    command += ["--log-path", str(layout.data_dir / "dbt_target")]  # nothing in the repo's dbt/
    result = subprocess.run(command, cwd=DBT_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:]
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        tables = {
            name: connection.sql(f"select * from {name}").df()
            for name in ("backtest_daily", "backtest_metrics", "regime_metrics", "regime_labels")
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
    # wins 100, 50, 20, 10, 5 (returns 1 %, 0.5 %, 0.2 %, 0.1 %, 0.05 %); one loss of 300 (-3 %)
    assert free["n_trades"] == 6
    assert _close(free["win_rate"], 5 / 6)
    assert _close(free["profit_factor"], 185 / 300)
    assert _close(free["avg_win"], (0.01 + 0.005 + 0.002 + 0.001 + 0.0005) / 5)
    assert _close(free["avg_loss"], -0.03)
    assert _close(free["payoff_ratio"], (0.0185 / 5) / 0.03)
    strict = _metric_row(metrics, "qwen__strict", "AAA")
    # a trip at exactly 0 is neither a win nor a loss, but it is a trade
    assert strict["n_trades"] == 4
    assert _close(strict["win_rate"], 1 / 4)
    assert _close(strict["profit_factor"], 400 / 150)
    assert _close(strict["avg_loss"], -0.0075)
    # the portfolio counts every sleeve's trips; a sleeve without trips has none
    assert _metric_row(metrics, "qwen__free", "__portfolio__")["n_trades"] == 6
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
            if mode == "strict":
                assert _close(row["fidelity"], float((rows["guardrail_status"] == "pass").mean()))
            else:
                assert pd.isna(row["fidelity"])
    for ticker in (*TICKERS, "__portfolio__"):
        free = _metric_row(metrics, "qwen__free", ticker)
        strict = _metric_row(metrics, "qwen__strict", ticker)
        assert _close(strict["alignment_tax"], free["alpha"] - strict["alpha"])
        assert pd.Timestamp(strict["alignment_tax_start"]) == SESSIONS[0]
        assert free["alignment_tax"] == 0
        assert pd.isna(_metric_row(metrics, "buy_and_hold", ticker)["alignment_tax"])
    assert (metrics[metrics["arm_kind"] == "llm"]["params_total_b"] == 35).all()


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
    _, _, tables = marts
    metrics = tables["backtest_metrics"]
    trapped = metrics[metrics["win_rate_trap"]]
    # only qwen__free's AAA sleeve and portfolio: 6 trades, 5/6 won, below buy-and-hold
    assert set(zip(trapped["arm"], trapped["ticker"], strict=True)) == {
        ("qwen__free", "AAA"),
        ("qwen__free", "__portfolio__"),
    }
    # qwen__strict: 4 trades (fewer than 5) and a 25 % win rate; not a trap
    assert not _metric_row(metrics, "qwen__strict", "AAA")["win_rate_trap"]


@pytest.mark.parametrize("arm", list(ARMS))
def test_regime_metrics_compound_each_regime_like_empyrical(marts, arm: str):
    sleeves, benchmark_returns, tables = marts
    sessions = SESSIONS[_window(arm)].date
    benchmark = pd.Series(benchmark_returns[_window(arm)], index=sessions)
    labels = tables["regime_labels"].set_index(
        pd.to_datetime(tables["regime_labels"]["date"]).dt.date
    )
    returns = pd.Series(_series(sleeves, arm, "__portfolio__"), index=sessions)
    risk_free = pd.Series(RISK_FREE[_window(arm)], index=sessions)
    held = pd.Series(_held(sleeves, arm, "__portfolio__"), index=sessions)
    regimes = labels["regime"].reindex(returns.index)
    assert regimes.notna().all() and regimes.nunique() >= 1
    metrics = tables["regime_metrics"]
    rows = metrics[metrics["arm"] == arm].set_index("regime")
    assert set(rows.index) == set(regimes)
    trips = pd.DataFrame(TRIPS.get(arm, []), columns=["pnl", "ret"])
    entries = [SESSIONS[10 + 40 * i].date() for i in range(len(trips))]
    trips["regime"] = [regimes.get(day) for day in entries]
    for regime, row in rows.iterrows():
        subset = returns[regimes == regime].to_numpy()
        rf = risk_free[regimes == regime].to_numpy()
        assert row["n_sessions"] == len(subset)
        assert _close(row["total_return"], empyrical.cum_returns_final(subset))
        assert _close(row["max_drawdown"], empyrical.max_drawdown(subset))
        assert _close(
            row["sharpe"], empyrical.sharpe_ratio(subset, risk_free=rf, annualization=PERIODS)
        )
        assert _close(
            row["annualized_volatility"], empyrical.annual_volatility(subset, annualization=PERIODS)
        )
        assert _close(row["calmar"], empyrical.calmar_ratio(subset, annualization=PERIODS))
        alpha, beta = empyrical.alpha_beta_aligned(
            subset - rf, benchmark[regimes == regime].to_numpy() - rf, annualization=PERIODS
        )
        assert _close(row["alpha"], alpha) and _close(row["beta"], beta)
        held_return = empyrical.cum_returns_final(held[regimes == regime].to_numpy())
        assert _close(row["excess_return"], row["total_return"] - held_return)
        assert row["n_trades"] == (trips["regime"] == regime).sum()
