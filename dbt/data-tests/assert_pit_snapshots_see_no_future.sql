-- Mirror of the leakage gate's row rules in SQL (the Great Expectations gate is the one that
-- blocks): every returned row is a snapshot holding something from on or after its decision.
select market, ticker, decision_date, information_cutoff
from {{ ref('pit_snapshots') }}
where max_price_date >= decision_date
   or list_max(list_transform(price_history, lambda bar: bar.date)) >= decision_date
   or max_news_published_at >= information_cutoff
   or list_max(list_transform(news, lambda item: item.published_at)) >= information_cutoff
   or report_published_at >= information_cutoff
   or report.published_at >= information_cutoff
   or report.period_end >= decision_date
