"""The migration's use of the shared validator (``ats_pipelines.lib.validation``).

Candles and reference candles go through ``DataValidator.candles`` (mark/index candles with
``require_volume=False``), trades through ``DataValidator.trades``. The validator keeps the
first row of a repeated key; repeats with the same values are counted as duplicates, repeats
with other values are quarantined (``*.duplicate_conflict``) with the rows it rejects.

Funding rates have no rule set in the shared validator yet. LOCAL STOP-GAP, marked as such:
:func:`_funding` applies only what the database would refuse anyway (missing time, a rate
outside (-1, 1)) and the validator's duplicate convention, shaping rejections exactly like
the validator's so the same quarantine writer takes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import asyncpg
import polars as pl

from ats_pipelines.db.quarantine import quarantine as write_quarantine
from ats_pipelines.lib.validation import REJECT_SCHEMA, DataValidator, payload_json
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.normalise import LOCATION, RAW, ROW, TS

UNREADABLE_RULE = "migration.unreadable"


@dataclass(frozen=True)
class Checked:
    """One validated piece: rows to load, rows to quarantine, and same-value repeats."""

    accepted: pl.DataFrame
    quarantine: pl.DataFrame  # REJECT_SCHEMA rows (one per broken rule)
    rows_rejected: int  # distinct source rows in ``quarantine``
    duplicates: int

    @staticmethod
    def empty(frame: pl.DataFrame) -> Checked:
        return Checked(frame.clear(), pl.DataFrame(schema=REJECT_SCHEMA), 0, 0)


class FileValidator:
    """Validation of one file's normalised rows, piece by piece."""

    def __init__(self, file: DiscoveredFile, validator: DataValidator | None = None) -> None:
        self.file = file
        self.validator = validator or DataValidator()

    def with_location(self, frame: pl.DataFrame) -> pl.DataFrame:
        where = pl.lit(f"{self.file.relative}:row ") + (pl.col(ROW) + 1).cast(pl.String)
        return frame.with_columns(where.alias(LOCATION))

    def check(self, frame: pl.DataFrame) -> Checked:
        """Rows holding text their column cannot read are rejected as such (raw text kept);
        the rest go through the dataset's rules."""
        if RAW not in frame.columns:
            return self._rules(frame)
        unread = frame.filter(pl.col(RAW).is_not_null())
        checked = self._rules(frame.filter(pl.col(RAW).is_null()).drop(RAW))
        if unread.is_empty():
            return checked
        return Checked(
            checked.accepted,
            pl.concat([_unreadable(unread, self.file), checked.quarantine]),
            checked.rows_rejected + unread.height,
            checked.duplicates,
        )

    def _rules(self, frame: pl.DataFrame) -> Checked:
        if frame.is_empty():
            return Checked.empty(frame)
        f = self.file
        if f.dataset in ("candles", "reference_candles"):
            result = self.validator.candles(
                frame,
                timeframe=f.timeframe,
                exchange=f.exchange,
                symbol=f.symbol,
                location_col=LOCATION,
                ts_col=TS,
                require_volume=f.dataset == "candles",
            )
        elif f.dataset == "trades":
            result = self.validator.trades(
                frame,
                exchange=f.exchange,
                symbol=f.symbol,
                location_col=LOCATION,
                ts_col=TS,
                id_col="trade_id",
            )
        else:
            return _funding(frame, f)
        bad = result.quarantinable()
        same = result.duplicates.filter(pl.col("rule").str.ends_with("duplicate_key"))
        return Checked(result.accepted, bad, bad["row"].n_unique(), same.height)


def _unreadable(unread: pl.DataFrame, file: DiscoveredFile) -> pl.DataFrame:
    """One rejection per row whose source held unreadable text; the payload is the row with
    that text in place of the null it became, so the quarantine shows what the file said."""
    rows = unread.to_dicts()
    reasons, payloads = [], []
    for row in rows:
        texts: dict[str, str] = json.loads(row.pop(RAW))
        named = "; ".join(
            f"{col} {text!r} is not a {'timestamp' if col == TS else 'number'}"
            for col, text in texts.items()
        )
        reasons.append(f"{row[LOCATION]}: {named}")
        payloads.append(payload_json({**row, **texts}))
    return pl.DataFrame(
        {
            "rule": [UNREADABLE_RULE] * len(rows),
            "reason": reasons,
            "location": unread[LOCATION],
            "exchange": [file.exchange] * len(rows),
            "symbol": [file.symbol] * len(rows),
            "timeframe": [file.timeframe] * len(rows),
            "ts": unread[TS],
            "payload": payloads,
            "row_hash": [hashlib.sha256(p.encode()).hexdigest() for p in payloads],
            "row": unread[ROW],
        },
        schema=REJECT_SCHEMA,
    )


def _funding(frame: pl.DataFrame, file: DiscoveredFile) -> Checked:
    """LOCAL STOP-GAP until the shared validator has funding-rate rules (see module doc)."""
    rate = pl.col("rate")
    rules = [
        ("funding.ts_missing", pl.col(TS).is_null(), "timestamp is missing"),
        (
            "funding.rate_range",
            (rate.is_null() | rate.is_nan() | (rate <= -1) | (rate >= 1)).fill_null(True),
            "rate is missing or outside (-1, 1)",
        ),
    ]
    work = frame.with_row_index("_i")
    hits = [
        work.filter(bad).select(
            "_i",
            pl.lit(rule).alias("rule"),
            (pl.col(LOCATION) + pl.lit(f": {why}")).alias("reason"),
        )
        for rule, bad, why in rules
    ]
    broken = pl.concat(hits)
    ok = work.join(broken.select("_i").unique(), on="_i", how="anti")
    first = pl.col("_i").first().over(TS)
    differs = pl.any_horizontal(
        pl.col(c).ne_missing(pl.col(c).first().over(TS)) for c in ("rate", "mark_price")
    )
    ok = ok.with_columns(first.alias("_first"), differs.alias("_differs"))
    repeats = ok.filter(pl.col("_i") != pl.col("_first"))
    conflicts = repeats.filter(pl.col("_differs")).select(
        "_i",
        pl.lit("funding.duplicate_conflict").alias("rule"),
        (pl.col(LOCATION) + pl.lit(": repeats an earlier time with other values")).alias("reason"),
    )
    accepted = ok.filter(pl.col("_i") == pl.col("_first")).drop("_i", "_first", "_differs")
    bad = pl.concat([broken, conflicts]).sort("_i", "rule")
    return Checked(
        accepted,
        _reject_rows(work, bad, file),
        bad["_i"].n_unique(),
        repeats.height - conflicts.height,
    )


def _reject_rows(work: pl.DataFrame, bad: pl.DataFrame, file: DiscoveredFile) -> pl.DataFrame:
    if bad.is_empty():
        return pl.DataFrame(schema=REJECT_SCHEMA)
    rows = bad.join(work, on="_i", how="left")
    payloads = [
        payload_json({k: v for k, v in r.items() if k not in ("_i", "rule", "reason")})
        for r in rows.drop("rule", "reason").to_dicts()
    ]
    return pl.DataFrame(
        {
            "rule": rows["rule"],
            "reason": rows["reason"],
            "location": rows[LOCATION],
            "exchange": [file.exchange] * rows.height,
            "symbol": [file.symbol] * rows.height,
            "timeframe": [file.timeframe] * rows.height,
            "ts": rows[TS],
            "payload": payloads,
            "row_hash": [hashlib.sha256(p.encode()).hexdigest() for p in payloads],
            "row": rows[ROW],
        },
        schema=REJECT_SCHEMA,
    )


async def quarantine(
    conn: asyncpg.Connection, rejected: pl.DataFrame, *, dataset: str, source: str, batch_id: int
) -> int:
    """The shared quarantine writer (each bad row once, tagged with the file's batch)."""
    return await write_quarantine(conn, rejected, dataset=dataset, source=source, batch_id=batch_id)
