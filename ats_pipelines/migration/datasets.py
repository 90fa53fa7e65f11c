"""Where each dataset goes: target table, the columns fixed per file, keys and checksum columns."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.normalise import OUTPUT, TS


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    table: str
    key: tuple[str, ...]  # within one file (the series columns are constant)
    checksum: tuple[str, ...]  # ts first
    text: frozenset[str] = frozenset()

    def series(self, file: DiscoveredFile) -> dict[str, str]:
        """The columns every row of ``file`` shares (part of the table's primary key)."""
        values = {"exchange": file.exchange, "symbol": file.symbol}
        if self.name in ("candles", "reference_candles"):
            assert file.timeframe is not None
            values["timeframe"] = file.timeframe
        if self.name == "reference_candles":
            assert file.price_type is not None
            values["price_type"] = file.price_type
        return values

    def rows_for_db(
        self, frame: pl.DataFrame, file: DiscoveredFile, source: str, batch_id: int
    ) -> pl.DataFrame:
        """A normalised chunk in the target table's columns, tagged with the batch id.

        Optional columns that are entirely empty are left out, so the table's defaults apply
        and the COPY carries less.
        """
        values = [
            c
            for c in OUTPUT[self.name]
            if c in self.checksum or c in self.key or frame[c].null_count() < frame.height
        ]
        return frame.select(
            *(pl.lit(v, pl.String).alias(k) for k, v in self.series(file).items()),
            pl.col(TS),
            *(pl.col(c) for c in values),
            pl.lit(source, pl.String).alias("source"),
            pl.lit(batch_id, pl.Int64).alias("batch_id"),
        )


SPECS: dict[str, DatasetSpec] = {
    "candles": DatasetSpec(
        "candles", "market.candles", (TS,), (TS, "open", "high", "low", "close", "volume")
    ),
    "reference_candles": DatasetSpec(
        "reference_candles",
        "market.reference_candles",
        (TS,),
        (TS, "open", "high", "low", "close", "volume"),
    ),
    "funding_rates": DatasetSpec(
        "funding_rates", "market.funding_rates", (TS,), (TS, "rate", "mark_price")
    ),
    "trades": DatasetSpec(
        "trades",
        "market.trades",
        (TS, "trade_id"),
        (TS, "trade_id", "price", "amount", "cost", "side"),
        frozenset({"trade_id", "side"}),
    ),
}
