-- One row per corporate action with its price factor and the ticker's cumulative factors
-- through it. f = (1 - cash_dividend / close_before) / split_ratio, close_before being the
-- raw close of the ticker's last session before the ex-date: the raw price on the ex-date is
-- about (close_before - dividend) / split_ratio = close_before x f. The cumulative products
-- over the events with ex_date <= d give each price date its factors from the past only
-- (int_price_features). An event before the ticker's first price has no close to scale its
-- dividend by: only its split counts (it moves every visible price alike anyway).
with events as (
    select * from {{ ref('stg_raw__corporate_actions') }}
),

prices as (
    select market, ticker, price_date, close from {{ ref('stg_raw__prices') }}
),

with_close as (
    select events.*, prices.close as close_before
    from events
    asof left join prices
        on events.market = prices.market
        and events.ticker = prices.ticker
        and events.ex_date > prices.price_date
),

factors as (
    select
        *,
        (1 - coalesce(cash_dividend / close_before, 0)) / split_ratio as price_factor
    from with_close
),

final as (
    select
        market,
        ticker,
        ex_date,
        known_from,
        split_ratio,
        cash_dividend,
        close_before,
        price_factor,
        product(price_factor) over through_event as cumulative_price_factor,
        product(split_ratio) over through_event as cumulative_split_ratio
    from factors
    window through_event as (
        partition by market, ticker order by ex_date
        rows between unbounded preceding and current row
    )
)

select * from final
