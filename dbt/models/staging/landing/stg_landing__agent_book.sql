-- Every arm's book as backtest/book.py wrote it (one file per arm, market and session).
with source as (
    select * from {{ landing_files('agent_book') }}
),

final as (
    select
        arm,
        market,
        ticker,
        "date",
        target_exposure,
        has_bar,
        shares,
        fill_price,
        traded_shares,
        traded_value,
        limit_blocked,
        fees,
        position_value,
        cash,
        equity,
        exposure,
        daily_return,
        initial_capital,
        cost_basis,
        avg_entry_price,
        entry_date,
        sessions_held,
        unrealized_return,
        last_fill_date,
        last_fill_shares,
        last_fill_price,
        order_status,
        last_close,
        row_hash
    from source
)

select * from final
