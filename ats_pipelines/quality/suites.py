"""The Great Expectations suites, defined in code and versioned with it.

One builder per dataset returns its suites by batch name (``rows``: one row per bar, trade or
snapshot; ``series``: one row per series, for coverage and row counts). Every expectation
carries ``meta.rule``, the rule id shared with the ingestion validator where one exists (see
``rules.py``), so a failure, a quarantined row and the report all name the same rule.
Time-dependent bounds are suite parameters (``$PARAMETER``) filled at validation time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ats_pipelines.quality.policy import QualityPolicy
from ats_pipelines.quality.prepare_ml import CLASSES
from ats_pipelines.quality.rules import describe

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.expectations.expectation import Expectation

SUITE_VERSION = "1"
Suites = dict[str, "ExpectationSuite"]


def _gxe() -> Any:
    import great_expectations.expectations as gxe

    return gxe


def _suite(name: str, expectations: list[Expectation]) -> ExpectationSuite:
    import great_expectations as gx

    return gx.ExpectationSuite(
        name=name,
        expectations=expectations,
        meta={"version": SUITE_VERSION, "defined_in": __name__},
    )


def _rule(rule: str) -> dict[str, Any]:
    return {"meta": {"rule": rule}, "notes": describe(rule)}


def _ts_rules(prefix: str) -> list[Expectation]:
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="_ts_ms", **_rule(f"{prefix}.ts_missing")),
        gxe.ExpectColumnValuesToBeBetween(
            column="_ts_ms", min_value={"$PARAMETER": "earliest_ms"}, **_rule(f"{prefix}.ts_range")
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="_ts_ms", max_value={"$PARAMETER": "latest_ms"}, **_rule(f"{prefix}.ts_future")
        ),
    ]


def _positive(columns: Sequence[str], rule: str, maximum: float) -> list[Expectation]:
    gxe = _gxe()
    out = []
    for column in columns:  # NaN counts as missing for GX: both halves are needed
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=column, **_rule(rule)))
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=0, strict_min=True, max_value=maximum, **_rule(rule)
            )
        )
    return out


def _at_least(a: str, b: str, rule: str) -> Expectation:
    # a missing value is the null/price rule's finding, not this one's (as in the validator)
    return _gxe().ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=a,
        column_B=b,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        **_rule(rule),
    )


def _between(
    column: str, low: float | None, high: float | None, rule: str, **kwargs: Any
) -> Expectation:
    return _gxe().ExpectColumnValuesToBeBetween(
        column=column, min_value=low, max_value=high, **_rule(rule), **kwargs
    )


def _in_set(column: str, values: Sequence[Any], rule: str, **kwargs: Any) -> Expectation:
    return _gxe().ExpectColumnValuesToBeInSet(
        column=column, value_set=list(values), **_rule(rule), **kwargs
    )


def _unique(columns: Sequence[str], rule: str) -> Expectation:
    return _gxe().ExpectCompoundColumnsToBeUnique(column_list=list(columns), **_rule(rule))


def candle_suites(timeframe: str, policy: QualityPolicy) -> Suites:
    """OHLCV rules of the validator, key uniqueness, ordering, alignment and coverage."""
    gxe = _gxe()
    rule = "ohlcv"
    rows = [
        *_ts_rules(rule),
        _in_set("timeframe", [timeframe], "ohlcv.timeframe"),
        _between("_ts_offset_ms", 0, 0, "ohlcv.ts_aligned"),
        *_positive(("open", "high", "low", "close"), "ohlcv.price_positive", policy.max_price),
        _at_least("high", "open", "ohlcv.high_bounds"),
        _at_least("high", "close", "ohlcv.high_bounds"),
        _at_least("open", "low", "ohlcv.low_bounds"),
        _at_least("close", "low", "ohlcv.low_bounds"),
        _at_least("high", "low", "ohlcv.high_low"),
        gxe.ExpectColumnValuesToNotBeNull(column="volume", **_rule("ohlcv.volume")),
        _between("volume", 0, policy.max_price, "ohlcv.volume"),
        _unique(("exchange", "symbol", "timeframe", "_ts_ms"), "ohlcv.duplicate_key"),
        _between("_ts_step_ms", 0, None, "ohlcv.ts_monotonic", strict_min=True),
    ]
    series = [_between("coverage", 1 - policy.coverage_tolerance, None, "ohlcv.coverage")]
    return {
        "rows": _suite(f"candles_{timeframe}", rows),
        "series": _suite(f"candles_{timeframe}.coverage", series),
    }


def trade_suites(policy: QualityPolicy, *, with_cost: bool = True) -> Suites:
    gxe = _gxe()
    rows = [
        *_ts_rules("trade"),
        *_positive(("price",), "trade.price_positive", policy.max_price),
        *_positive(("amount",), "trade.amount_positive", policy.max_price),
        _in_set("side", ("buy", "sell"), "trade.side"),
        gxe.ExpectColumnValuesToNotBeNull(column="trade_id", **_rule("trade.id_missing")),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="trade_id", min_value=1, **_rule("trade.id_missing")
        ),
        _unique(("exchange", "symbol", "trade_id"), "trade.duplicate_key"),
        _between("_ts_step_ms", 0, None, "trade.ts_monotonic"),
    ]
    if with_cost:
        rows.append(_between("_cost_rel_err", 0, policy.cost_rel_tolerance, "trade.cost"))
    return {"rows": _suite("trades", rows)}


def order_book_suites(policy: QualityPolicy) -> Suites:
    gxe = _gxe()
    rows = [
        *_ts_rules("book"),
        _in_set("_levels_match", [True], "book.levels_mismatch"),
        _in_set("_prices_positive", [True], "book.price_positive"),
        _in_set("_sizes_positive", [True], "book.size_positive"),
        _in_set("_bids_descending", [True], "book.bids_descending"),
        _in_set("_asks_ascending", [True], "book.asks_ascending"),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="_best_ask",
            column_B="_best_bid",
            ignore_row_if="either_value_is_missing",
            **_rule("book.crossed"),
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="mid",
            column_B="_best_bid",
            ignore_row_if="either_value_is_missing",
            **_rule("book.mid_inside"),
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="_best_ask",
            column_B="mid",
            ignore_row_if="either_value_is_missing",
            **_rule("book.mid_inside"),
        ),
        _between("spread", 0, None, "book.spread_range"),
        _between("spread_bps", 0, policy.max_spread_bps, "book.spread_range"),
        *[_between(f"imbalance_{n}", -1, 1, "book.imbalance_range") for n in (1, 5, 10)],
        _unique(("exchange", "symbol", "_ts_ms"), "book.duplicate_key"),
        _between("_ts_step_ms", 0, None, "book.ts_monotonic", strict_min=True),
    ]
    return {"rows": _suite("order_book_snapshots", rows)}


def order_book_agg_suites(timeframe: str, policy: QualityPolicy) -> Suites:
    rows = [
        _unique(("exchange", "symbol", "_ts_ms"), "book_agg.duplicate_key"),
        _between("_ts_offset_ms", 0, 0, "book_agg.ts_aligned"),
        _between("snapshots", 1, None, "book_agg.snapshots"),
        _between("mid_low", 0, policy.max_price, "book_agg.mid_bounds", strict_min=True),
        _at_least("mid_high", "mid_low", "book_agg.mid_bounds"),
        *[_at_least(c, "mid_low", "book_agg.mid_bounds") for c in ("mid_open", "mid_close")],
        *[_at_least("mid_high", c, "book_agg.mid_bounds") for c in ("mid_open", "mid_close")],
        _between("spread_mean", 0, None, "book_agg.spread_range"),
        _at_least("spread_max", "spread_mean", "book_agg.spread_range"),
        _between("spread_bps_mean", 0, policy.max_spread_bps, "book_agg.spread_range"),
        *[_between(f"imbalance_{n}_mean", -1, 1, "book_agg.imbalance_range") for n in (1, 5, 10)],
    ]
    return {"rows": _suite(f"order_book_{timeframe}_agg", rows)}


def trade_flow_suites(policy: QualityPolicy) -> Suites:
    rows = [
        _unique(("exchange", "symbol", "_ts_ms"), "flow.duplicate_key"),
        _between("_ts_offset_ms", 0, 0, "flow.ts_aligned"),
        *[
            _between(c, 0, None, "flow.nonnegative")
            for c in ("buy_volume", "sell_volume", "buy_count", "sell_count")
        ],
        _between(
            "vwap",
            0,
            policy.max_price,
            "flow.vwap",
            strict_min=True,
            row_condition="_has_volume == True",
            condition_parser="pandas",
        ),
    ]
    return {"rows": _suite("trade_flow_1m", rows)}


def feature_suites(
    columns: Sequence[str],
    policy: QualityPolicy,
    *,
    keys: Sequence[str] = ("symbol",),
    with_candles: bool = True,
    required: Sequence[str] | None = None,
) -> Suites:
    """No nulls after warm-up (``required`` columns, default all), declared ranges (finite
    otherwise), rows in line with the candles they were computed from."""
    gxe = _gxe()
    after = {"row_condition": "_after_warmup == True", "condition_parser": "pandas"}
    rows: list[Expectation] = [_unique((*keys, "_ts_ms"), "features.duplicate_key")]
    for column in columns if required is None else required:
        rows.append(
            gxe.ExpectColumnValuesToNotBeNull(column=column, **after, **_rule("features.no_nulls"))
        )
    for column in columns:
        low, high = policy.feature_ranges.get(column, (-policy.max_price, policy.max_price))
        rows.append(_between(column, low, high, "features.range"))
    series = (
        [
            _between(
                "row_ratio", policy.min_row_ratio, policy.max_row_ratio, "features.rows_vs_candles"
            )
        ]
        if with_candles
        else []
    )
    return {
        "rows": _suite("features", rows),
        **({"series": _suite("features.rows", series)} if series else {}),
    }


def label_suites(
    policy: QualityPolicy,
    *,
    label_cols: Sequence[str] = ("label",),
    classes: Sequence[str] = CLASSES,
) -> Suites:
    gxe = _gxe()
    rows = []
    for col in label_cols:
        rows += [
            _in_set(col, classes, "labels.classes"),
            gxe.ExpectColumnValuesToNotBeNull(
                column=col,
                row_condition="_before_horizon == True",
                condition_parser="pandas",
                **_rule("labels.no_nulls"),
            ),
            *[
                gxe.ExpectColumnMeanToBeBetween(
                    column=f"_is_{col}_{c}",
                    min_value=policy.min_class_share,
                    max_value=policy.max_class_share,
                    **_rule("labels.class_balance"),
                )
                for c in classes
            ],
        ]
    return {"rows": _suite("labels", rows)}


def signal_suites(policy: QualityPolicy, *, with_probas: bool = True) -> Suites:
    gxe = _gxe()
    rows = [
        *_ts_rules("signals")[:1],
        gxe.ExpectColumnValuesToNotBeNull(column="proba", **_rule("signals.proba_range")),
        _between("proba", 0, 1, "signals.proba_range"),
        _in_set("pred", CLASSES, "signals.pred"),
        gxe.ExpectColumnValuesToNotBeNull(column="pred", **_rule("signals.pred")),
        _unique(("exchange", "symbol", "tf", "_ts_ms", "model_id"), "signals.one_per_bar"),
        _between("_ts_offset_ms", 0, 0, "signals.ts_aligned"),
        _between("latency_ms", 0, None, "signals.latency"),
    ]
    if with_probas:
        tol = policy.probas_tolerance
        rows += [
            _between("_probas_min", 0, None, "signals.proba_range"),
            _between("_probas_max", None, 1, "signals.proba_range"),
            _between("_probas_sum", 1 - tol, 1 + tol, "signals.probas_sum"),
            _between("_proba_gap", 0, tol, "signals.proba_is_pred"),
        ]
    return {"rows": _suite("predictions", rows)}
