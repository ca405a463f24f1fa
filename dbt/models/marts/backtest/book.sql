-- One row per arm, market, ticker and session (DESIGN §7-§8): the book each agent held after
-- the session, as its next prompt showed it; stepped by the backtest's simulation, so the
-- arm's rows in backtest_daily over its decision span are these.
with book as (
    select * from {{ ref('stg_landing__agent_book') }}
),

final as (
    select
        arm,
        market,
        ticker,
        "date",
        shares,
        cash,
        position_value,
        equity,
        exposure,
        avg_entry_price,
        cost_basis,
        entry_date,
        sessions_held,
        unrealized_return,
        traded_shares,
        fill_price,
        fees,
        last_fill_date,
        last_fill_shares,
        last_fill_price,
        order_status,
        order_status in ('limit_up', 'limit_down', 'cash', 'lot', 't_plus_one') as order_blocked,
        target_exposure,
        has_bar,
        daily_return,
        row_hash
    from book
)

select * from final
