"""S1-S4 as events: their firing rates, and the rule-only baseline that holds between them.

The SQL of the rules is unit-tested in dbt (_int__models.yml: the S2 cross, the S3 exit's
cross, S4 on Chinese and English headlines); here the sample warehouse shows the rules are
events, not states."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from backtest.baselines import rule_only
from inference.signal_rates import firing_rates, format_firing_rates, read_signals, signal_columns

NAN = np.nan


def _signals(market: str, rows: list[dict[str, bool]]) -> pd.DataFrame:
    frame = pd.DataFrame([{column: False for column in signal_columns()} | row for row in rows])
    return frame.assign(market=market)


def test_firing_rates_are_shares_of_ticker_days_per_market_and_rule():
    signals = pd.concat(
        [
            _signals("us", [{"s2_entry": True}, {"s2_exit": True}, {}, {"s2_entry": True}]),
            _signals("cn", [{"s4_entry": True, "s4_exit": None}, {}]),
        ],
        ignore_index=True,
    )
    rates = firing_rates(signals).set_index(["market", "rule"])
    assert rates.loc[("us", "S2"), "ticker_days"] == 4
    assert rates.loc[("us", "S2"), "entry"] == pytest.approx(0.5)
    assert rates.loc[("us", "S2"), "exit"] == pytest.approx(0.25)
    assert rates.loc[("us", "S1"), "entry"] == 0.0
    assert rates.loc[("cn", "S4"), "entry"] == pytest.approx(0.5)
    assert rates.loc[("cn", "S4"), "exit"] == 0.0  # a missing signal did not fire
    table = format_firing_rates(firing_rates(signals))
    assert table.splitlines()[2].split()[:2] == ["cn", "2"]  # one line per market, in order
    assert "50.0 /  0.0" in table.splitlines()[2]
    assert "50.0 / 25.0" in table.splitlines()[3]


def test_firing_rates_name_a_missing_signal_column():
    signals = _signals("us", [{}]).drop(columns="s3_exit")
    with pytest.raises(ValueError, match="s3_exit"):
        firing_rates(signals)


def test_rule_only_holds_from_the_entry_event_to_the_exit_event():
    """Entry and exit fire once each (events): the arm buys, keeps the shares while nothing
    fires, and sells on the exit."""
    entry = np.array([[False, True, False, False, False, False]])
    exit_ = np.array([[False, False, False, False, True, False]])
    np.testing.assert_array_equal(rule_only(entry, exit_), [[NAN, 1.0, NAN, NAN, 0.0, NAN]])


@pytest.fixture(scope="module")
def sample_rates(built_sample) -> pd.DataFrame:
    return firing_rates(read_signals(built_sample.warehouse)).set_index(["market", "rule"])


@pytest.mark.parametrize("market", ["us", "cn"])
def test_s2_is_an_event_in_the_sample(sample_rates, market):
    """As a state (MA5 above MA20) S2 held on about half the ticker-days and its entry or exit
    on nearly all of them; as a cross each fires on a few percent."""
    s2 = sample_rates.loc[(market, "S2")]
    assert 0.0 < s2["entry"] < 0.1
    assert 0.0 < s2["exit"] < 0.1
    assert s2["entry"] + s2["exit"] < 0.2


@pytest.mark.parametrize("market", ["us", "cn"])
def test_s3_exit_is_an_event_and_most_days_fire_no_rule(built_sample, sample_rates, market):
    """As a state (RSI-14 above 55, or the close below its 60-session average) S3's exit held on
    about three ticker-days in four; as a cross it fires on a few percent, and most ticker-days
    have no rule firing at all, so Strict is more than a trend filter."""
    assert 0.0 < sample_rates.loc[(market, "S3"), "exit"] < 0.15
    columns = " or ".join(f"signals.{name}" for name in signal_columns())
    with duckdb.connect(str(built_sample.warehouse), read_only=True) as connection:
        (any_rule,) = connection.execute(
            f"select avg(({columns})::int) from pit_snapshots where market = ?", [market]
        ).fetchone()
    assert any_rule < 0.5


def test_s4_fires_on_a_share_news_tone_in_the_sample(built_sample, sample_rates):
    """The Chinese lexicon reads the sample's Chinese A-share headlines: S4 fires on CN
    ticker-days with no annual report in its window, i.e. on the news tone alone."""
    assert sample_rates.loc[("cn", "S4"), "entry"] > 0
    assert sample_rates.loc[("cn", "S4"), "exit"] > 0
    with duckdb.connect(str(built_sample.warehouse), read_only=True) as connection:
        by_news = connection.execute(
            """
            select
                count(*) filter (where signals.s4_entry) as entries,
                count(*) filter (where signals.s4_exit) as exits
            from pit_snapshots
            where market = 'cn'
              and (report is null or report.published_at < information_cutoff - interval 3 day)
            """
        ).fetchone()
    assert by_news[0] > 0 and by_news[1] > 0
