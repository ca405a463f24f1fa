"""Whether arms' decisions over a window are all made and current, so a rerun can skip them.

A decision is current when it is answered and was made on the snapshot the warehouse now holds
(`snapshot_hash`), with the arm's present configuration (`config_hash`: model, sampling, prompt
or rules, token budget), and on the book that now stands before its date (the chain checked by
`inference.book.stale_decisions`). Every snapshot of the window needs one, per arm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import duckdb

from inference.book import stale_decisions
from ingest.layout import DataLayout, arm_component


def decisions_to_make(
    layout: DataLayout,
    config_hashes: Mapping[str, str],
    markets: Sequence[str],
    start: date,
    end: date,
) -> int:
    """How many (arm, snapshot) pairs of the window lack a current decision: none made, made
    on another snapshot or configuration, left without an answer, or made on another book."""
    folders = [
        layout.landing_dir / "llm_decisions" / arm_component(arm) / f"market={market}"
        for arm in config_hashes
        for market in markets
    ]
    files = [str(folder / "*.parquet") for folder in folders if any(folder.glob("*.parquet"))]
    placeholders = ", ".join("?" * len(markets))
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        [(snapshots,)] = connection.execute(
            "select count(*) from pit_snapshots where decision_date between ? and ? and market "
            f"in ({placeholders})",
            [start, end, *markets],
        ).fetchall()
        if not files:
            return snapshots * len(config_hashes)
        [(missing,)] = connection.execute(
            f"""
            with arms as (
                select unnest(?::varchar[]) as arm, unnest(?::varchar[]) as config_hash
            ),
            expected as (
                select arms.arm, arms.config_hash, s.market, s.ticker, s.decision_date,
                    s.snapshot_hash
                from pit_snapshots s cross join arms
                where s.decision_date between ? and ? and s.market in ({placeholders})
            ),
            made as (
                select arm, market, ticker, decision_date::date as decision_date,
                    snapshot_hash, config_hash, answer_status
                from read_parquet(?, union_by_name = true, hive_partitioning = false)
                where decision_date::date between ? and ?
            )
            select count(*) from expected e
            left join made m
                on m.arm = e.arm and m.market = e.market and m.ticker = e.ticker
                and m.decision_date = e.decision_date
            where m.snapshot_hash is distinct from e.snapshot_hash
                or m.config_hash is distinct from e.config_hash
                or m.answer_status is distinct from 'answered'
            """,
            [
                list(config_hashes),
                list(config_hashes.values()),
                start,
                end,
                *markets,
                files,
                start,
                end,
            ],
        ).fetchall()
    stale = stale_decisions(layout)
    if not stale.empty:
        dates = stale["decision_date"].dt.date
        stale = stale[stale["arm"].isin(list(config_hashes)) & dates.between(start, end)]
    return int(missing) + len(stale)
