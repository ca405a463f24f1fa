-- One row per closed round trip (DESIGN §8): flat -> flat in one sleeve, with its net pnl
-- after every cost, its return on the cash put in, and the regime it was entered in.
with trips as (
    select * from {{ ref('stg_landing__backtest_round_trips') }}
),

arms as (
    select * from {{ ref('stg_landing__backtest_arms') }}
),

regimes as (
    select market, "date", regime from {{ ref('regime_labels') }}
),

final as (
    select
        trips.arm,
        trips.market,
        trips.ticker,
        trips.entry_date,
        trips.exit_date,
        {{ arm_columns('arms') }},
        trips.holding_sessions,
        trips.n_fills,
        trips.entry_value,
        trips.exit_value,
        trips.net_pnl,
        trips.trade_return,
        trips.win,
        coalesce(regimes.regime, 'unlabelled') as entry_regime
    from trips
    inner join arms
        on trips.arm = arms.arm and trips.market = arms.market
    left join regimes
        on trips.market = regimes.market and trips.entry_date = regimes."date"
)

select * from final
