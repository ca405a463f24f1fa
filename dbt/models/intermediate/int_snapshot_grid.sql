-- The snapshot grid of this build's window: every ticker of the market at every decision
-- session of its universe membership (member_from..member_to), with its last price date
-- strictly before the decision date. A decision needs a price before it and is at most one session past the market's last price. A table of keys:
-- prices, news and reports read it, so the ASOF JOIN runs once, and their queries carry an
-- exact row count instead of an ASOF estimate (those estimates, orders of magnitude too high,
-- starved the news aggregate of memory and sent it to disk under a memory limit).
with decisions as (
    select * from {{ ref('int_decision_points') }}
    where {{ decision_window('decision_date') }}
),

universe as (
    select market, ticker, member_from, member_to from {{ ref('stg_raw__universe') }}
),

price_dates as (
    select market, ticker, price_date from {{ ref('stg_raw__prices') }}
),

market_span as (
    select market, min(price_date) as first_price_date, max(price_date) as last_price_date
    from price_dates
    group by market
),

eligible as (
    select decisions.*
    from decisions
    inner join market_span on decisions.market = market_span.market
    where decisions.decision_date > market_span.first_price_date
      and decisions.previous_session_date <= market_span.last_price_date
),

-- Only members on D: a ticker outside its membership has no snapshot (no survivor's future).
grid as (
    select eligible.market, universe.ticker, eligible.decision_date, eligible.information_cutoff
    from eligible
    inner join universe
        on eligible.market = universe.market
        and eligible.decision_date >= coalesce(universe.member_from, eligible.decision_date)
        and eligible.decision_date <= coalesce(universe.member_to, eligible.decision_date)
),

-- The last price date before each decision: an ASOF JOIN on the keys only.
final as (
    select grid.*, prices.price_date as max_price_date
    from grid
    asof inner join price_dates as prices
        on grid.market = prices.market
        and grid.ticker = prices.ticker
        and grid.decision_date > prices.price_date
)

select * from final
