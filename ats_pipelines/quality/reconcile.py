"""Cross-source reconciliation: two sources of the same prices must agree within a tolerance.

* stream-built bars against the exchange's REST klines of the same minutes;
* migrated (legacy cache) history against REST klines where the windows overlap;
* DEX trade prices against the CEX price of the same asset and minute.

The comparisons are pure functions of two frames; ``reconcile_sources.py`` reads the frames
from the database and the exchange. Every disagreement is listed with both values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

PRICES = ("open", "high", "low", "close")
USD_QUOTES = frozenset({"USDT", "USDC", "USD", "BUSD", "DAI", "FDUSD", "TUSD", "USDP"})
WRAPPED = {"WSOL": "SOL", "WETH": "ETH", "WBTC": "BTC", "WBNB": "BNB"}


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of comparing two sources over the keys either has."""

    name: str
    rule: str
    left: str
    right: str
    compared: int
    disagreements: pl.DataFrame  # keys, the fields that differ, both values
    only_left: pl.DataFrame  # keys the left source has and the right lacks
    only_right: pl.DataFrame

    @property
    def passed(self) -> bool:
        return (
            self.disagreements.is_empty()
            and self.only_left.is_empty()
            and self.only_right.is_empty()
        )

    @property
    def agreed(self) -> int:
        return self.compared - self.disagreements.height

    def summary(self) -> str:
        return (
            f"{self.name}: {self.compared} compared, {self.disagreements.height} disagree, "
            f"{self.only_left.height} only in {self.left}, "
            f"{self.only_right.height} only in {self.right}"
        )


def _rel(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    scale = pl.max_horizontal(a.abs(), b.abs())
    return pl.when(scale > 0).then((a - b).abs() / scale).otherwise(0.0)


def compare_bars(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    name: str,
    rule: str,
    left_label: str,
    right_label: str,
    price_rel_tolerance: float,
    volume_rel_tolerance: float,
    keys: Sequence[str] = ("exchange", "symbol", "ts"),
) -> Reconciliation:
    """OHLCV of the same bars from two sources; relative tolerances per field kind."""
    keys = list(keys)
    fields = [f for f in (*PRICES, "volume") if f in left.columns and f in right.columns]
    l_side = left.select(*keys, *fields)
    r_side = right.select(*keys, *[pl.col(f).alias(f"{f}_{right_label}") for f in fields])
    both = l_side.join(r_side, on=keys, how="inner")
    checks = []
    for f in fields:
        tol = volume_rel_tolerance if f == "volume" else price_rel_tolerance
        checks.append(
            (_rel(pl.col(f), pl.col(f"{f}_{right_label}")) > tol)
            .fill_null(True)
            .alias(f"_{f}_differs")
        )
    both = both.with_columns(checks)
    differs = [f"_{f}_differs" for f in fields]
    bad = (
        both.filter(pl.any_horizontal(differs))
        .with_columns(
            pl.concat_str(
                [pl.when(pl.col(f"_{f}_differs")).then(pl.lit(f)) for f in fields],
                separator=",",
                ignore_nulls=True,
            ).alias("fields")
        )
        .drop(differs)
    )
    bad = bad.rename({f: f"{f}_{left_label}" for f in fields})
    return Reconciliation(
        name=name,
        rule=rule,
        left=left_label,
        right=right_label,
        compared=both.height,
        disagreements=bad.sort(keys),
        only_left=l_side.join(r_side, on=keys, how="anti").select(keys).sort(keys),
        only_right=r_side.join(l_side, on=keys, how="anti").select(keys).sort(keys),
    )


def asset_of(symbol: str) -> tuple[str, str]:
    """(base, quote) with wrapped tokens unwrapped and USD stablecoins spelled ``USD``."""
    base, _, quote = symbol.partition("/")
    quote = quote.split(":")[0]
    base, quote = WRAPPED.get(base, base), WRAPPED.get(quote, quote)
    return base, "USD" if quote in USD_QUOTES else quote


def compare_cex_dex(
    cex: pl.DataFrame, dex: pl.DataFrame, *, tolerance_bps: float, name: str = "cex_vs_dex"
) -> Reconciliation:
    """Per minute: DEX VWAP against the CEX bar's price (vwap if known, else close).

    ``cex``: exchange, symbol, ts, price; ``dex``: exchange, symbol, ts, price (minute VWAP).
    Only minutes both have are compared (DEX pools trade sparsely; absence is no error).
    """

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        pairs = [asset_of(s) for s in frame["symbol"].to_list()]
        return frame.with_columns(
            pl.Series("asset", [f"{b}/{q}" for b, q in pairs], dtype=pl.String)
        )

    both = keyed(cex).join(keyed(dex), on=["asset", "ts"], suffix="_dex")
    both = both.with_columns(
        ((pl.col("price_dex") - pl.col("price")) / pl.col("price") * 1e4).alias("deviation_bps")
    )
    bad = (
        both.filter(pl.col("deviation_bps").abs() > tolerance_bps)
        .select(
            "asset",
            "ts",
            pl.col("exchange").alias("cex"),
            pl.col("symbol").alias("cex_symbol"),
            pl.col("price").alias("cex_price"),
            pl.col("exchange_dex").alias("dex"),
            pl.col("symbol_dex").alias("dex_symbol"),
            pl.col("price_dex").alias("dex_price"),
            "deviation_bps",
        )
        .sort("asset", "ts")
    )
    empty = pl.DataFrame(schema={"asset": pl.String, "ts": pl.Datetime("us", "UTC")})
    return Reconciliation(
        name=name,
        rule="reconcile.cex_dex",
        left="cex",
        right="dex",
        compared=both.height,
        disagreements=bad,
        only_left=empty,
        only_right=empty,
    )
