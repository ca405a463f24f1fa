-- Each snapshot of the grid with the features of its last price date before the decision,
-- joined by equality on that date: the lists never go through the ASOF JOIN's sort.
with grid as (
    select * from {{ ref('int_snapshot_grid') }}
),

final as (
    select
        grid.market,
        grid.ticker,
        grid.decision_date,
        grid.information_cutoff,
        grid.max_price_date,
        features.* exclude (market, ticker, price_date)
    from grid
    inner join {{ ref('int_price_features') }} as features
        on grid.market = features.market
        and grid.ticker = features.ticker
        and grid.max_price_date = features.price_date
)

select * from final
