with source as (
    select * from {{ landing_files('backtest_arms') }}
),

final as (
    select
        arm,
        market,
        model_key,
        model,
        "mode",
        attitude,
        replicate,
        is_llm,
        arm_kind,
        is_reasoning,
        "view",
        window_start,
        window_end,
        n_sessions,
        n_tickers,
        n_decisions,
        n_untradable_decisions,
        fill_at,
        random_seed,
        initial_capital,
        config_hash,
        decision_ingest_ids,
        decisions_hash,
        ingest_id
    from source
)

select * from final
