with source as (
    select * from {{ landing_files('backtest_sleeves') }}
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
        hold_equity,
        hold_daily_return
    from source
)

select * from final
