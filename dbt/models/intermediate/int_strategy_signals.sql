-- S1-S4 entry and exit per snapshot: the one SQL definition of the rules whose words are in
-- seeds/strategies.csv. Price rules read features of the last session before the decision
-- (S2 also those of the session before it); S4 reads only the report and news visible at the
-- cutoff, the news with its market's tone lexicon. A rule without enough history does not
-- fire.
{% set window_days = var('s4_window_days') %}
with prices as (
    select * from {{ ref('int_snapshot_prices') }}
),

news as (
    select market, ticker, decision_date, news from {{ ref('int_snapshot_news') }}
),

reports as (
    select market, ticker, decision_date, report from {{ ref('int_snapshot_reports') }}
),

recent as (
    select
        prices.*,
        -- Net tone of the shown news of the last days: +1 per item with only positive
        -- words, -1 per item with only negative words.
        coalesce(
            list_sum(
                list_transform(
                    list_filter(
                        news.news,
                        lambda item: item.published_at
                            >= prices.information_cutoff - interval {{ window_days }} day
                    ),
                    -- The market's lexicon: English whole words in any case ('i': no lowered
                    -- copy of each headline) for us, Chinese terms anywhere for cn.
                    lambda item: case prices.market
                        when 'us' then (
                            regexp_matches(item.headline, {{ word_pattern('s4_positive_terms') }}, 'i')
                        )::int - (
                            regexp_matches(item.headline, {{ word_pattern('s4_negative_terms') }}, 'i')
                        )::int
                        when 'cn' then (
                            regexp_matches(item.headline, {{ word_pattern('s4_positive_terms_zh', whole_words=false) }})
                        )::int - (
                            regexp_matches(item.headline, {{ word_pattern('s4_negative_terms_zh', whole_words=false) }})
                        )::int
                    end
                )
            ),
            0
        ) as news_tone,
        case
            when reports.report.published_at
                >= prices.information_cutoff - interval {{ window_days }} day
                then reports.report.net_income_growth
        end as recent_report_growth
    from prices
    left join news
        on {{ same_snapshot('prices', 'news') }}
    left join reports
        on {{ same_snapshot('prices', 'reports') }}
),

final as (
    select
        market,
        ticker,
        decision_date,
        coalesce(close > prior_high_20 and volume_ratio_20d > 1, false) as s1_entry,
        coalesce(close < prior_low_10, false) as s1_exit,
        -- S2 fires on the cross (an event): the 5-session MA is above the 20-session MA on
        -- the last session and was not above it on the session before; the exit mirrors it.
        coalesce(ma_5 > ma_20 and not ma_5_previous > ma_20_previous, false) as s2_entry,
        coalesce(ma_5 < ma_20 and not ma_5_previous < ma_20_previous, false) as s2_exit,
        coalesce(rsi_14 < {{ var('s3_rsi_entry') }} and close > ma_60, false) as s3_entry,
        -- S3's exit is an event too: RSI-14 crossing above the exit level, or the close
        -- crossing below its 60-session MA (either state alone holds on most sessions).
        coalesce(
            (
                rsi_14 > {{ var('s3_rsi_exit') }}
                and not rsi_14_previous > {{ var('s3_rsi_exit') }}
            )
            or (close < ma_60 and not close_previous < ma_60_previous),
            false
        ) as s3_exit,
        coalesce(
            recent_report_growth >= {{ var('s4_surprise_pct') / 100 }}
            or news_tone >= {{ var('s4_news_tone') }},
            false
        ) as s4_entry,
        coalesce(
            recent_report_growth <= -{{ var('s4_surprise_pct') / 100 }}
            or news_tone <= -{{ var('s4_news_tone') }},
            false
        ) as s4_exit,
        news_tone,
        recent_report_growth
    from recent
)

select * from final
