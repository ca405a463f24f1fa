-- The newest K news items per snapshot, published within L days before the cutoff.
-- Each item is assigned once to the first decision whose cutoff is after its publication
-- (ASOF), reduced to its K newest per ticker and decision, and then served to the decisions
-- of the next L+1 days: no range join of every item against every snapshot.
{% set lookback_days = var('news_lookback_days') %}
{% set max_items = var('news_max_items') %}
with decision_points as (
    select market, decision_date, information_cutoff from {{ ref('int_decision_points') }}
),

news as (
    select market, ticker, news_id, published_at, headline, news_source
    from {{ ref('stg_raw__news') }}
    where {{ decision_window_with_lookback('published_at', lookback_days + 1) }}
),

assigned as (
    select news.*, decision_points.decision_date as visible_from
    from news
    asof inner join decision_points
        on news.market = decision_points.market
        and decision_points.information_cutoff > news.published_at
),

buckets as (
    select
        market,
        ticker,
        visible_from,
        max_by(
            struct_pack(
                published_at := published_at, news_id := news_id, headline := headline,
                source := news_source
            ),
            struct_pack(published_at := published_at, news_id := news_id),
            {{ max_items }}
        ) as items
    from assigned
    group by market, ticker, visible_from
),

serve_map as (
    select
        bucket.market,
        bucket.decision_date as bucket_date,
        target.decision_date,
        target.information_cutoff
    from decision_points as bucket
    inner join decision_points as target
        on bucket.market = target.market
        and target.decision_date between bucket.decision_date
            and bucket.decision_date + interval {{ lookback_days + 1 }} day
    where {{ decision_window('target.decision_date') }}
),

candidates as (
    select
        serve_map.market,
        buckets.ticker,
        serve_map.decision_date,
        serve_map.information_cutoff,
        flatten(list(buckets.items)) as items
    from buckets
    inner join serve_map
        on buckets.market = serve_map.market
        and buckets.visible_from = serve_map.bucket_date
    group by serve_map.market, buckets.ticker, serve_map.decision_date, serve_map.information_cutoff
),

final as (
    select
        market,
        ticker,
        decision_date,
        list_slice(
            list_reverse_sort(
                list_filter(
                    items,
                    lambda item: item.published_at
                        >= information_cutoff - interval {{ lookback_days }} day
                )
            ),
            1,
            {{ max_items }}
        ) as news
    from candidates
)

select
    *,
    len(news) as news_count,
    list_max(list_transform(news, lambda item: item.published_at)) as max_news_published_at
from final
where len(news) > 0
