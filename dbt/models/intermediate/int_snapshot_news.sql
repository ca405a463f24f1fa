-- The newest K news items per snapshot, published before its cutoff and within L days of it.
-- Items are numbered once per ticker in publication order; the items visible at a cutoff are
-- then a prefix of that order, so a snapshot needs only the position of its last visible item
-- (one ASOF lookup) and the K positions before it: no range join of items against snapshots.
-- Headlines join back only for the K items kept.
{% set lookback_days = var('news_lookback_days') %}
{% set max_items = var('news_max_items') %}
with grid as (
    select market, ticker, decision_date, information_cutoff
    from {{ ref('int_snapshot_prices') }}
),

news as (
    select market, ticker, news_id, published_at
    from {{ ref('stg_raw__news') }}
    where {{ decision_window_with_lookback('published_at', lookback_days + 1) }}
),

numbered as materialized (  -- read twice: number once
    select
        market,
        ticker,
        news_id,
        published_at,
        row_number() over (
            partition by market, ticker order by published_at, news_id
        ) as position
    from news
),

-- The last position published at each instant: items published at the same instant are
-- all visible or all hidden at a cutoff.
instants as (
    select market, ticker, published_at, max(position) as last_position
    from numbered
    group by market, ticker, published_at
),

heads as (
    select grid.*, instants.last_position
    from grid
    asof inner join instants
        on grid.market = instants.market
        and grid.ticker = instants.ticker
        and grid.information_cutoff > instants.published_at
),

wanted as (
    select
        market,
        ticker,
        decision_date,
        information_cutoff,
        unnest(
            range(greatest(last_position - {{ max_items }} + 1, 1), last_position + 1)
        ) as position
    from heads
),

picked as (
    select wanted.market, wanted.ticker, wanted.decision_date, numbered.news_id,
        numbered.published_at
    from wanted
    inner join numbered
        on wanted.market = numbered.market
        and wanted.ticker = numbered.ticker
        and wanted.position = numbered.position
    where numbered.published_at >= wanted.information_cutoff - interval {{ lookback_days }} day
),

described as (
    select picked.*, news.headline, news.news_source
    from picked
    inner join {{ ref('stg_raw__news') }} as news
        on picked.market = news.market
        and picked.ticker = news.ticker
        and picked.news_id = news.news_id
),

final as (
    select
        market,
        ticker,
        decision_date,
        -- Newest first: structs sort by published_at, then news_id.
        list_reverse_sort(
            list(
                struct_pack(
                    published_at := published_at, news_id := news_id, headline := headline,
                    source := news_source
                )
            )
        ) as news,
        max(published_at) as max_news_published_at,
        count(*) as news_count
    from described
    group by market, ticker, decision_date
)

select * from final
