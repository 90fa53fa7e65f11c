"""Promotion gates: what a challenger must show on the holdout before it becomes champion.

1. **beats baselines** — lower log-loss than the class prior and the momentum rule by a relative
   margin, at least ``min_signals`` signals, and a mean realised reward-to-risk per signal above
   each baseline's by ``rr_margin`` (above ``rr_margin`` itself when the baseline emits too few
   signals to compare, e.g. a prior whose majority class is HOLD);
2. **beats champion** — on the same holdout rows, a log-loss lower than the champion's by a
   relative margin and a mean reward-to-risk no worse than the champion's minus a tolerance
   (passes when there is no champion);
3. **no feature missing** — every model feature is served by the feature service and was
   populated in training (null share at most ``max_null_share``).

The Dagster asset checks (blocking) report these gates; the pure functions here make them
testable and reusable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PromotionPolicy:
    min_signals: int = 30
    log_loss_margin: float = 0.005  # relative: model <= baseline * (1 - margin)
    rr_margin: float = 0.02  # realised R per signal above the baseline's
    champion_log_loss_margin: float = 0.0  # relative: challenger <= champion * (1 - margin)
    champion_rr_tolerance: float = 0.05
    max_null_share: float = 0.5

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when passed)
    values: dict[str, Any] = field(default_factory=dict)


def beats_baselines(metrics: dict[str, Any], policy: PromotionPolicy) -> Gate:
    model = metrics["model"]
    signals, rr = model["trading"]["signals"], model["trading"]["mean_rr"]
    reasons, values = (
        [],
        {"model_log_loss": model["log_loss"], "model_mean_rr": rr, "model_signals": signals},
    )
    if signals < policy.min_signals:
        reasons.append(f"model emitted {signals} signals on the holdout (< {policy.min_signals})")
    for name in ("prior", "momentum"):
        base = metrics[name]
        values[f"{name}_log_loss"] = base["log_loss"]
        values[f"{name}_mean_rr"] = base["trading"]["mean_rr"]
        bound = base["log_loss"] * (1 - policy.log_loss_margin)
        if not model["log_loss"] <= bound:
            reasons.append(
                f"log-loss {model['log_loss']:.5f} not below {name} baseline "
                f"{base['log_loss']:.5f} by {policy.log_loss_margin:.1%}"
            )
        comparable = base["trading"]["signals"] >= policy.min_signals
        floor = (base["trading"]["mean_rr"] if comparable else 0.0) + policy.rr_margin
        if not rr > floor:
            what = (
                f"{name} baseline's {base['trading']['mean_rr']:.3f}"
                if comparable
                else f"zero ({name} emits too few signals to compare)"
            )
            reasons.append(
                f"mean realised R per signal {rr:.3f} not above {what} by {policy.rr_margin}"
            )
    return Gate("beats_baselines", not reasons, reasons, values)


def beats_champion(
    metrics: dict[str, Any], policy: PromotionPolicy, champion_id: str | None
) -> Gate:
    if champion_id is None:
        return Gate("beats_champion", True, [], {"champion": None})
    champ = metrics.get("champion")
    values: dict[str, Any] = {"champion": champion_id}
    if not champ or not champ.get("comparable"):
        missing = (champ or {}).get("missing_features", "unknown")
        return Gate(
            "beats_champion",
            False,
            [
                f"champion {champion_id} could not be scored on this holdout "
                f"(features missing: {missing})"
            ],
            values,
        )
    model = metrics["model"]
    values.update(
        model_log_loss=model["log_loss"],
        champion_log_loss=champ["log_loss"],
        model_mean_rr=model["trading"]["mean_rr"],
        champion_mean_rr=champ["trading"]["mean_rr"],
    )
    reasons = []
    if not model["log_loss"] <= champ["log_loss"] * (1 - policy.champion_log_loss_margin):
        reasons.append(
            f"log-loss {model['log_loss']:.5f} not below champion {champion_id}'s "
            f"{champ['log_loss']:.5f} (margin {policy.champion_log_loss_margin:.1%})"
        )
    if (
        not model["trading"]["mean_rr"]
        >= champ["trading"]["mean_rr"] - policy.champion_rr_tolerance
    ):
        reasons.append(
            f"mean realised R {model['trading']['mean_rr']:.3f} below champion's "
            f"{champ['trading']['mean_rr']:.3f} - {policy.champion_rr_tolerance}"
        )
    return Gate("beats_champion", not reasons, reasons, values)


def no_feature_missing(
    features: list[str],
    served: list[str] | None,
    null_share: dict[str, float],
    policy: PromotionPolicy,
) -> Gate:
    """``served``: the feature service's features now (None: the service could not be read)."""
    reasons = []
    if served is None:
        reasons.append("the feature service's feature list could not be read")
    else:
        absent = [f for f in features if f not in served]
        if absent:
            reasons.append(f"not served by the feature service: {absent}")
    empty = sorted(f for f in features if null_share.get(f, 1.0) > policy.max_null_share)
    if empty:
        reasons.append(f"null in more than {policy.max_null_share:.0%} of training rows: {empty}")
    return Gate(
        "no_feature_missing",
        not reasons,
        reasons,
        {"features": len(features), "served": None if served is None else len(served)},
    )
