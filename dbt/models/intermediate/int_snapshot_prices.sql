-- Each snapshot of the grid with the features of its last price date before the decision,
-- joined by equality on that date: the lists never go through the ASOF JOIN's sort.
-- Levels (price_history, close, moving averages, prior high/low) are shown on the decision's
-- basis: the raw prices of the last price date m, adjusted by the events known at the cutoff
-- that take effect after m and no later than D (an event on D itself counts only when
-- announced before the cutoff; one without an announcement is known only at D's open). So a
-- decision before an event sees unadjusted levels, and from the first decision that knows
-- the event the earlier history is back-adjusted onto the new basis. Returns, RSI, volatility
-- and volume ratio are ratios on the forward-adjusted series: the same on any basis.
with grid as (
    select * from {{ ref('int_snapshot_grid') }}
),

events as (
    select market, ticker, ex_date, known_from, price_factor, split_ratio
    from {{ ref('int_corporate_action_factors') }}
),

-- Events after the last price date up to D, known at the cutoff: only a few snapshots have one.
pending as (
    select
        grid.market,
        grid.ticker,
        grid.decision_date,
        product(events.price_factor) as price_factor,
        product(events.split_ratio) as split_ratio
    from grid
    inner join events
        on grid.market = events.market
        and grid.ticker = events.ticker
        and events.ex_date > grid.max_price_date
        and events.ex_date <= grid.decision_date
        and events.known_from < grid.information_cutoff
    group by grid.market, grid.ticker, grid.decision_date
),

joined as (
    select
        grid.market,
        grid.ticker,
        grid.decision_date,
        grid.information_cutoff,
        grid.max_price_date,
        features.* exclude (market, ticker, price_date, price_adjustment, split_adjustment),
        coalesce(pending.price_factor, 1.0) / features.price_adjustment as price_scale,
        coalesce(pending.split_ratio, 1.0) * features.split_adjustment as volume_scale
    from grid
    inner join {{ ref('int_price_features') }} as features
        on grid.market = features.market
        and grid.ticker = features.ticker
        and grid.max_price_date = features.price_date
    left join pending
        on {{ same_snapshot('grid', 'pending') }}
),

final as (
    select
        * exclude (price_scale, volume_scale) replace (
            close * price_scale as close,
            volume * volume_scale as volume,
            ma_5 * price_scale as ma_5,
            ma_20 * price_scale as ma_20,
            ma_60 * price_scale as ma_60,
            prior_high_20 * price_scale as prior_high_20,
            prior_low_10 * price_scale as prior_low_10,
            -- Without events or factors both scales are exactly 1: the list stays as it is.
            case
                when price_scale = 1 and volume_scale = 1 then price_history
                else list_transform(
                    price_history,
                    lambda bar: struct_pack(
                        "date" := bar."date",
                        open := bar.open * price_scale,
                        high := bar.high * price_scale,
                        low := bar.low * price_scale,
                        close := bar.close * price_scale,
                        volume := bar.volume * volume_scale
                    )
                )
            end as price_history
        )
    from joined
)

select * from final
