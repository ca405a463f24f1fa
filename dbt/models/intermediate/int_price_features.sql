-- Features of each ticker as of the close of each price date, from that date and earlier rows
-- only. A snapshot for decision date D takes the row of the last price date before D.
-- Prices are adjusted (x adj_factor). Window lengths are fixed and named in the columns.
with prices as (
    select
        market,
        ticker,
        price_date,
        open * adj_factor as open,
        high * adj_factor as high,
        low * adj_factor as low,
        close * adj_factor as close,
        volume
    from {{ ref('stg_raw__prices') }}
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
        -- The same averages as of the session before (S2's crossover compares the two).
        avg(close) over (by_date rows between 5 preceding and 1 preceding) as ma_5_previous,
        avg(close) over (by_date rows between 20 preceding and 1 preceding) as ma_20_previous,
        avg(gain) over (by_date rows between 13 preceding and current row) as avg_gain_14,
        avg(loss) over (by_date rows between 13 preceding and current row) as avg_loss_14,
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
        -- RSI-14 with simple 14-session averages of gains and losses (Cutler's RSI).
        case
            when n_sessions <= 14 then null
            when avg_loss_14 = 0 then 100.0
            else 100.0 - 100.0 / (1.0 + avg_gain_14 / avg_loss_14)
        end as rsi_14,
        case when n_sessions > 20 then volatility_20d end as volatility_20d,
        case when n_sessions > 20 then volume / nullif(avg_volume_prior_20, 0) end
            as volume_ratio_20d,
        case when n_sessions > 20 then prior_high_20 end as prior_high_20,
        case when n_sessions > 10 then prior_low_10 end as prior_low_10,
        price_history
    from windowed
)

select * from final
