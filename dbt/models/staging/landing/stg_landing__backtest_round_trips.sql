with source as (
    select * from {{ landing_files('backtest_round_trips') }}
),

final as (
    select
        arm,
        market,
        ticker,
        entry_date,
        exit_date,
        holding_sessions,
        n_fills,
        entry_value,
        exit_value,
        net_pnl,
        "return" as trade_return,
        win
    from source
)

select * from final
