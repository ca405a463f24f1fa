-- Features of each ticker as of the close of each price date, from that date and earlier rows
-- only. A snapshot for decision date D takes the row of the last price date before D.
-- Prices are forward-adjusted with what had happened by each date: P~(d) = raw(d) x
-- adj_factor(d) / K(d), K(d) the product of the price factors of the ticker's corporate actions
-- with ex_date <= d (int_corporate_action_factors), and volume / the product of their split
-- ratios. Both conventions grow in the same sense (adj_factor is cumulative from the past, as
-- 1 / K is), so a series never jumps at an event and no row uses a later one. The levels are on
-- the basis of the first price; int_snapshot_prices moves them onto each decision's basis.
-- Window lengths are fixed and named in the columns.
with raw_prices as (
    select * from {{ ref('stg_raw__prices') }}
),

events as (
    select market, ticker, ex_date, cumulative_price_factor, cumulative_split_ratio
    from {{ ref('int_corporate_action_factors') }}
),

adjusted as (
    select
        raw_prices.*,
        raw_prices.adj_factor / coalesce(events.cumulative_price_factor, 1.0) as price_adjustment,
        coalesce(events.cumulative_split_ratio, 1.0) as split_adjustment
    from raw_prices
    asof left join events
        on raw_prices.market = events.market
        and raw_prices.ticker = events.ticker
        and raw_prices.price_date >= events.ex_date
),

prices as (
    select
        market,
        ticker,
        price_date,
        price_adjustment,
        split_adjustment,
        open * price_adjustment as open,
        high * price_adjustment as high,
        low * price_adjustment as low,
        close * price_adjustment as close,
        volume / split_adjustment as volume
    from adjusted
),

lagged as (
    select
        *,
        row_number() over by_date as n_sessions,
        lag(close, 1) over by_date as close_lag_1,
        lag(close, 5) over by_date as close_lag_5,
        lag(close, 20) over by_date as close_lag_20
    from prices
    window by_date as (partition by market, ticker order by price_date)
),

moves as (
    select
        *,
        close / close_lag_1 - 1 as ret_1d,
        greatest(close - close_lag_1, 0) as gain,
        greatest(close_lag_1 - close, 0) as loss,
        struct_pack(
            "date" := price_date, open := open, high := high, low := low, close := close,
            volume := volume
        ) as bar
    from lagged
),

windowed as (
    select
        *,
        avg(close) over (by_date rows between 4 preceding and current row) as ma_5,
        avg(close) over (by_date rows between 19 preceding and current row) as ma_20,
        avg(close) over (by_date rows between 59 preceding and current row) as ma_60,
        -- The same averages as of the session before (S2's and S3's crossovers compare the
        -- last session with the one before it).
        avg(close) over (by_date rows between 5 preceding and 1 preceding) as ma_5_previous,
        avg(close) over (by_date rows between 20 preceding and 1 preceding) as ma_20_previous,
        avg(close) over (by_date rows between 60 preceding and 1 preceding) as ma_60_previous,
        avg(gain) over (by_date rows between 13 preceding and current row) as avg_gain_14,
        avg(loss) over (by_date rows between 13 preceding and current row) as avg_loss_14,
        avg(gain) over (by_date rows between 14 preceding and 1 preceding) as avg_gain_14_previous,
        avg(loss) over (by_date rows between 14 preceding and 1 preceding) as avg_loss_14_previous,
        stddev_samp(ret_1d) over (by_date rows between 19 preceding and current row)
            as volatility_20d,
        avg(volume) over (by_date rows between 20 preceding and 1 preceding) as avg_volume_prior_20,
        max(high) over (by_date rows between 20 preceding and 1 preceding) as prior_high_20,
        min(low) over (by_date rows between 10 preceding and 1 preceding) as prior_low_10,
        -- The last N bars as N - 1 lags and the current bar (lags past the first row are null):
        -- about half the cost of a list() window over the same frame.
        list_filter(
            [
                {%- for lag in range(var('price_history_sessions') - 1, 0, -1) %}
                lag(bar, {{ lag }}) over by_date,
                {%- endfor %}
                bar
            ],
            lambda past: past is not null
        ) as price_history
    from moves
    window by_date as (partition by market, ticker order by price_date)
),

final as (
    select
        market,
        ticker,
        price_date,
        n_sessions,
        -- raw(d) = P~(d) / price_adjustment; raw volume = adjusted volume x split_adjustment
        price_adjustment,
        split_adjustment,
        close,
        volume,
        ret_1d,
        case when n_sessions > 5 then close / close_lag_5 - 1 end as ret_5d,
        case when n_sessions > 20 then close / close_lag_20 - 1 end as ret_20d,
        case when n_sessions >= 5 then ma_5 end as ma_5,
        case when n_sessions >= 20 then ma_20 end as ma_20,
        case when n_sessions >= 60 then ma_60 end as ma_60,
        case when n_sessions >= 6 then ma_5_previous end as ma_5_previous,
        case when n_sessions >= 21 then ma_20_previous end as ma_20_previous,
        case when n_sessions >= 61 then ma_60_previous end as ma_60_previous,
        close_lag_1 as close_previous,
        -- RSI-14 with simple 14-session averages of gains and losses (Cutler's RSI).
        case
            when n_sessions <= 14 then null
            when avg_loss_14 = 0 then 100.0
            else 100.0 - 100.0 / (1.0 + avg_gain_14 / avg_loss_14)
        end as rsi_14,
        case
            when n_sessions <= 15 then null
            when avg_loss_14_previous = 0 then 100.0
            else 100.0 - 100.0 / (1.0 + avg_gain_14_previous / avg_loss_14_previous)
        end as rsi_14_previous,
        case when n_sessions > 20 then volatility_20d end as volatility_20d,
        case when n_sessions > 20 then volume / nullif(avg_volume_prior_20, 0) end
            as volume_ratio_20d,
        case when n_sessions > 20 then prior_high_20 end as prior_high_20,
        case when n_sessions > 10 then prior_low_10 end as prior_low_10,
        price_history
    from windowed
)

select * from final
