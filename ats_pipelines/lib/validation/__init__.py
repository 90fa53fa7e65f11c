"""One validator for every ingestion path: migration files, REST backfills and the stream.

``DataValidator`` checks a polars frame at once (``candles``, ``trades``, ``order_books``) or one
message at a time (``check_candle``, ``check_trade``, ``check_book``); both apply the same rules
with the same stable ids (``RULES``). A frame result holds the accepted rows, the rejected ones
(one row per broken rule, shaped for ``ops.quarantine``) and, separately, repeated keys.

Every rejection says where (``location``: ``file:row N``, or a message id the caller passes),
which rule (``rule``) and why, naming the values (``reason``); ``payload`` is the original row as
JSON (non-finite floats spelled ``"NaN"``/``"Infinity"``, which JSON lacks) and ``row_hash`` its
SHA-256, so re-validating the same input quarantines each bad row once. Writing rejections is
``ats_pipelines.db.quarantine``'s job; this package never touches a database.

Layout: one module per dataset (``candles``, ``trades``, ``books``: rule ids, the message check,
the frame rules), ``frames`` (the frame machinery they share), ``common`` (result types and
helpers), ``validator`` (the clock and the entry points).
"""

from ats_pipelines.lib.validation import books, candles, trades
from ats_pipelines.lib.validation.common import (
    REJECT_SCHEMA,
    ValidationResult,
    Violation,
    payload_json,
)
from ats_pipelines.lib.validation.validator import DataValidator

RULES: dict[str, str] = {**candles.RULES, **trades.RULES, **books.RULES}

__all__ = [
    "REJECT_SCHEMA",
    "RULES",
    "DataValidator",
    "ValidationResult",
    "Violation",
    "payload_json",
]
