"""Which decisions the current warehouse can vouch for (DESIGN §7 lineage).

Every decision row names the snapshot its prompt was made of (`snapshot_hash`, a content hash
of the point-in-time snapshot) and the ingest of its market (`ingest_id`). A decision is
*current* when `pit_snapshots` holds that very snapshot for its market, ticker and date. Any
other decision was made on data the warehouse no longer has: the data were ingested again
with different content, the warehouse was built for another window, or the row predates
lineage. The backtest refuses such decisions rather than simulate them on today's prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from ingest.layout import DataLayout, arm_component

# Why a decision is not current, in the order they are told.
STALE_REASONS = {
    "no_lineage": "were made before decisions recorded their snapshot",
    "changed": "were made on snapshots whose content has changed since (data ingested again)",
    "not_built": "have no snapshot in the warehouse (not built for their dates)",
}


@dataclass(frozen=True)
class StaleArm:
    arm: str
    market: str
    total: int
    counts: dict[str, int]  # reason -> decisions
    first: pd.Timestamp
    last: pd.Timestamp
    ingests: tuple[str, ...]  # the ingest ids the stale decisions name

    def describe(self, layout: DataLayout) -> str:
        reasons = "; ".join(
            f"{count} {STALE_REASONS[reason]}" for reason, count in self.counts.items() if count
        )
        made_on = f" (made on ingest {', '.join(self.ingests)})" if self.ingests else ""
        folder = layout.landing_dir / "llm_decisions" / arm_component(self.arm)
        return (
            f"arm {self.arm}, market {self.market}: {sum(self.counts.values())} of "
            f"{self.total} decisions{made_on}: {reasons}. Decide them again with `strat-llm "
            f"infer --arm {self.arm} --market {self.market} --start {self.first.date()} --end "
            f"{self.last.date()}`, or move {folder}/market={self.market} away to drop them"
        )


def stale_decisions(warehouse: Path, decisions: pd.DataFrame) -> list[StaleArm]:
    """The arms (per market) with decisions whose snapshot the warehouse does not hold.
    `decisions` needs arm, market, ticker, decision_date, snapshot_hash and ingest_id."""
    if decisions.empty:
        return []
    frame = decisions[["arm", "market", "ticker", "decision_date", "snapshot_hash", "ingest_id"]]
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        connection.register("decisions", frame)
        rows = connection.execute(
            """
            select
                d.arm,
                d.market,
                count(*) as total,
                count(*) filter (where d.snapshot_hash is null) as no_lineage,
                count(*) filter (
                    where d.snapshot_hash is not null and s.snapshot_hash is not null
                    and s.snapshot_hash != d.snapshot_hash
                ) as changed,
                count(*) filter (
                    where d.snapshot_hash is not null and s.snapshot_hash is null
                ) as not_built,
                min(d.decision_date) filter (
                    where s.snapshot_hash is distinct from d.snapshot_hash
                ) as first_stale,
                max(d.decision_date) filter (
                    where s.snapshot_hash is distinct from d.snapshot_hash
                ) as last_stale,
                list(distinct d.ingest_id order by d.ingest_id) filter (
                    where s.snapshot_hash is distinct from d.snapshot_hash
                    and d.ingest_id is not null
                ) as ingests
            from decisions as d
            left join pit_snapshots as s
                on s.market = d.market
                and s.ticker = d.ticker
                and s.decision_date = cast(d.decision_date as date)
            group by d.arm, d.market
            order by d.arm, d.market
            """
        ).df()
    return [
        StaleArm(
            arm=row.arm,
            market=row.market,
            total=int(row.total),
            counts={reason: int(getattr(row, reason)) for reason in STALE_REASONS},
            first=pd.Timestamp(row.first_stale),
            last=pd.Timestamp(row.last_stale),
            ingests=tuple(row.ingests if row.ingests is not None else ()),
        )
        for row in rows.itertuples()
        if row.no_lineage + row.changed + row.not_built
    ]
