"""Whole-file refusals, decided after a file is read and before it is verified: a file whose
data is not what its name says, or too much of which was rejected, is failed with nothing of
it kept (its rows are deleted with its batch), and the ledger says why in one line."""

from __future__ import annotations

from ats_pipelines.lib.timeframes import from_duration, parse_timeframe
from ats_pipelines.migration.config import MigrationConfig
from ats_pipelines.migration.discovery import DiscoveredFile
from ats_pipelines.migration.grid import SpacingTracker

# bar files whose rows must sit one timeframe apart (funding times drift between exchanges'
# intervals, trades have none)
SPACED_DATASETS = ("candles", "reference_candles")


def spacing_refusal(file: DiscoveredFile, spacing: SpacingTracker) -> str | None:
    """The timeframe in the name against the data's own most common spacing."""
    if file.dataset not in SPACED_DATASETS or file.timeframe is None:
        return None
    tf = parse_timeframe(file.timeframe)
    step = spacing.dominant_ms()
    if tf.ms is None or step is None or step == tf.ms:
        return None
    spelled = from_duration(step) if step > 0 and step % 1000 == 0 else f"{step} ms"
    return (
        f"refused: the file name says timeframe {tf.value} but its rows are {spelled} apart "
        "(their most common spacing)"
    )


def rejection_refusal(rows_read: int, rows_rejected: int, config: MigrationConfig) -> str | None:
    """More than ``max_rejected_fraction`` of the rows rejected, or none accepted."""
    if rows_read == 0:
        return None
    if rows_rejected >= rows_read:
        return f"refused: all {rows_read} rows rejected (see ops.quarantine)"
    share = rows_rejected / rows_read
    if share > config.max_rejected_fraction:
        return (
            f"refused: {rows_rejected} of {rows_read} rows rejected ({share:.2%}), more than "
            f"max_rejected_fraction {config.max_rejected_fraction:.2%} (see ops.quarantine)"
        )
    return None
