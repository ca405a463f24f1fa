-- The columns of llm_decisions that the metric marts read (DESIGN §7).
with source as (
    select * from {{ landing_files('llm_decisions') }}
),

final as (
    select
        arm,
        model,
        "mode",
        attitude,
        replicate,
        market,
        ticker,
        decision_date,
        "action",
        target_exposure,
        previous_exposure,
        confidence,
        "rule",
        parse_status,
        guardrail_status,
        "view",
        book_date,
        book_hash,
        is_llm,
        is_reasoning,
        answer_status,
        error_class,
        snapshot_hash,
        ingest_id,
        config_hash,
        -- the model's own answer before the guardrail (fidelity reads it)
        proposed_action,
        proposed_target_exposure
    from source
)

select * from final
