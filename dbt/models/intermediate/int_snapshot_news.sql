-- The newest K news items per snapshot, published before its cutoff and within L days of it.
-- Each item is assigned once to the first decision that can see it (a join on its UTC day,
-- no sort), and each (ticker, decision) bucket keeps its K newest items and its count (a hash
-- aggregate). A snapshot's last visible bucket holds its K newest items when it has K or
-- more. Otherwise bucket counts summed per ticker give every item's position in publication
-- order, the items visible at a cutoff are a prefix of that order, and the snapshot takes the
-- K positions up to its last visible item: no range join of items against snapshots.
{% set lookback_days = var('news_lookback_days') %}
{% set max_items = var('news_max_items') %}
with grid as (
    select market, ticker, decision_date, information_cutoff
    from {{ ref('int_snapshot_grid') }}
),

decisions as (
    select
        market,
        decision_date,
        information_cutoff,
        (information_cutoff at time zone 'UTC')::date as cutoff_day,
        lead(decision_date) over (partition by market order by decision_date) as next_decision
    from {{ ref('int_decision_points') }}
),

-- From the lookback before the first cutoff: older items can never be shown.
calendar_days as (
    select
        market,
        unnest(
            generate_series(
                min(cutoff_day) - interval {{ lookback_days + 1 }} day,
                max(cutoff_day),
                interval 1 day
            )
        )::date as day
    from decisions
    group by market
),

-- Per UTC day: the first decision whose cutoff falls on or after it, and the one after that.
day_map as (
    select
        calendar_days.market,
        calendar_days.day,
        decisions.decision_date,
        decisions.information_cutoff,
        decisions.next_decision
    from calendar_days
    asof inner join decisions
        on calendar_days.market = decisions.market
        and calendar_days.day <= decisions.cutoff_day
),

news as (
    select market, ticker, news_id, published_at, headline, news_source
    from {{ ref('stg_raw__news') }}
    where {{ decision_window_with_lookback('published_at', lookback_days + 1) }}
),

assigned as (
    select
        news.*,
        case
            when news.published_at < day_map.information_cutoff then day_map.decision_date
            else day_map.next_decision
        end as visible_from
    from news
    inner join day_map
        on news.market = day_map.market
        and (news.published_at at time zone 'UTC')::date = day_map.day
),

buckets as (
    select
        market,
        ticker,
        visible_from,
        count(*) as n_items,
        -- The item is its own sort key (published_at, then news_id): one key per row.
        max(
            struct_pack(
                published_at := published_at, news_id := news_id, headline := headline,
                source := news_source
            ),
            {{ max_items }}
        ) as newest
    from assigned
    where visible_from is not null
    group by market, ticker, visible_from
),

-- Each bucket's last position in the ticker's publication order. A bucket feeds a short head
-- (fewer than K items) if it is one, or if the next bucket is one: a head reaches into earlier
-- buckets only while the later ones hold fewer than K items together. Only the keys and
-- counts go through the window and the ASOF join: sorting the lists cost more than the rest.
bucket_sizes as materialized (
    select market, ticker, visible_from, n_items from buckets
),

positions as (
    select
        market,
        ticker,
        visible_from,
        n_items,
        (sum(n_items) over (
            by_time rows between unbounded preceding and current row
        ))::bigint as last_position,
        n_items < {{ max_items }}
            or coalesce(lead(n_items) over by_time < {{ max_items }}, false) as feeds_short_head
    from bucket_sizes
    window by_time as (partition by market, ticker order by visible_from)
),

-- The last bucket visible to each snapshot.
heads as (
    select
        grid.*,
        positions.visible_from,
        positions.n_items,
        positions.last_position
    from grid
    asof inner join positions
        on grid.market = positions.market
        and grid.ticker = positions.ticker
        and grid.decision_date >= positions.visible_from
),

-- A head with K items or more holds the snapshot's K newest visible items, newest first
-- (max's order): only the lookback remains to apply, and mostly all K are within it. The list
-- is built once, in the bucket, and streams through this join (the heads are its hash table).
full_heads as (
    select
        full_heads.market,
        full_heads.ticker,
        full_heads.decision_date,
        case
            when buckets.newest[{{ max_items }}].published_at >= full_heads.lookback_start
                then buckets.newest
            else list_filter(
                buckets.newest, lambda item: item.published_at >= full_heads.lookback_start
            )
        end as news
    from buckets
    inner join (
        select
            *,
            information_cutoff - interval {{ lookback_days }} day as lookback_start
        from heads
        where n_items >= {{ max_items }}
    ) as full_heads
        on buckets.market = full_heads.market
        and buckets.ticker = full_heads.ticker
        and buckets.visible_from = full_heads.visible_from
    where buckets.newest[1].published_at >= full_heads.lookback_start
),

-- A shorter head takes the K positions up to its last item from the buckets before it; only
-- the K newest of each bucket can be among them, and they keep their positions.
items as (
    select
        buckets.market,
        buckets.ticker,
        positions.last_position - unnest(range(len(buckets.newest))) as position,
        unnest(buckets.newest) as item
    from buckets
    inner join positions
        on buckets.market = positions.market
        and buckets.ticker = positions.ticker
        and buckets.visible_from = positions.visible_from
    where positions.feeds_short_head
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
    where n_items < {{ max_items }}
),

picked as (
    select wanted.market, wanted.ticker, wanted.decision_date, items.item
    from wanted
    inner join items
        on wanted.market = items.market
        and wanted.ticker = items.ticker
        and wanted.position = items.position
    where items.item.published_at
        >= wanted.information_cutoff - interval {{ lookback_days }} day
),

short_heads as (
    select
        market,
        ticker,
        decision_date,
        -- Newest first: structs sort by published_at, then news_id.
        list_reverse_sort(list(item)) as news
    from picked
    group by market, ticker, decision_date
),

shown as (
    select * from full_heads
    union all
    -- Never empty: only items within the lookback were picked.
    select * from short_heads
),

final as (
    select
        market,
        ticker,
        decision_date,
        news,
        news[1].published_at as max_news_published_at,
        len(news) as news_count
    from shown
)

select * from final
