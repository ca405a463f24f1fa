-- Every decision row flagged in or out of its model's training window (the `models` seed):
-- in_training_window is true on or before the model's knowledge cutoff (the model may have
-- seen what followed: memorisation risk), false after it, null when the cutoff is unknown or
-- the decision is a rule agent's (not an LLM).
with decisions as (
    select * from {{ ref('stg_landing__llm_decisions') }}
),

models as (
    select * from {{ ref('models') }}
),

final as (
    select
        decisions.arm,
        decisions.market,
        decisions.ticker,
        decisions.decision_date,
        decisions.model,
        decisions.is_llm,
        models.knowledge_cutoff,
        case
            when decisions.is_llm and models.knowledge_cutoff is not null
                then decisions.decision_date <= models.knowledge_cutoff
        end as in_training_window
    from decisions
    left join models
        on decisions.model = models.model_id
)

select * from final
