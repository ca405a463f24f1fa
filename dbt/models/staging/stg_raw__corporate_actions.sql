-- Splits, bonus issues and cash dividends by ex-date. known_from is when the event became
-- known: its announcement, or the ex-date's session open when the source gives none
-- (DESIGN §4; the ingest refuses an announcement after that open).
with source as (
    select * from {{ source('raw', 'corporate_actions') }}
),

rules as (
    select market, timezone, session_open from {{ ref('market_rules') }}
),

final as (
    select
        source.market,
        source.ticker,
        source.ex_date,
        source.split_ratio,
        source.cash_dividend,
        source.announced_at,
        coalesce(
            source.announced_at, timezone(rules.timezone, source.ex_date + rules.session_open)
        ) as known_from
    from source
    inner join rules on source.market = rules.market
)

select * from final
