"""Risk attitudes: how far a model may go (all modes are told; Strict enforces)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attitude:
    name: str
    max_exposure: float  # largest target exposure allowed, fraction of the sleeve
    stop_loss: float  # loss since entry (fraction) at which a sell is always allowed
    description: str


ATTITUDES: dict[str, Attitude] = {
    attitude.name: attitude
    for attitude in (
        Attitude("conservative", 0.5, 0.05, "Preserve capital: small positions, quick exits."),
        Attitude("neutral", 0.8, 0.08, "Balance return and risk."),
        Attitude("aggressive", 1.0, 0.12, "Seek return: full positions, wide stops."),
    )
}


def get_attitude(name: str | None) -> Attitude | None:
    if name is None:
        return None
    if name not in ATTITUDES:
        raise ValueError(f"unknown attitude {name!r}; expected one of {', '.join(ATTITUDES)}")
    return ATTITUDES[name]
