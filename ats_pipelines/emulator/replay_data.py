"""Loading the recorded market data in ``../shared/testdata`` into replayable per-symbol form.

Each loader reads one family of files (freqtrade candles and trades, nautilus Binance REST
samples and trades, cryptofeed's Binance websocket capture with its REST depth snapshots) and
returns rows in the emulator's wire types without changing a recorded value. A missing file is
skipped, so a partial copy of the data still replays what it has.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import polars as pl

from ats_pipelines.emulator.intervals import next_open
from ats_pipelines.emulator.model import (
    DepthDiff,
    DepthSnapshot,
    KlineRow,
    SymbolSpec,
    TradeBatch,
    float_to_str,
)

log = logging.getLogger(__name__)
QUOTES = ("USDT", "BUSD", "USDC", "EUR", "BTC", "ETH", "BNB")


class ReplayDataError(ValueError):
    """A recorded file does not have the shape its loader expects; names file and rule."""


def split_symbol(symbol_id: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol_id.endswith(quote) and len(symbol_id) > len(quote):
            return symbol_id[: -len(quote)], quote
    raise ReplayDataError(f"symbol {symbol_id!r}: no known quote currency ({', '.join(QUOTES)})")


@dataclass
class ReplaySymbolData:
    """Everything recorded for one symbol."""

    spec: SymbolSpec
    candles: dict[str, list[KlineRow]] = field(default_factory=dict)
    trades: TradeBatch | None = None
    snapshot: DepthSnapshot | None = None
    diffs: list[DepthDiff] = field(default_factory=list)


def _symbol(data: dict[str, ReplaySymbolData], base: str, quote: str) -> ReplaySymbolData:
    symbol_id = base + quote
    if symbol_id not in data:
        data[symbol_id] = ReplaySymbolData(SymbolSpec(symbol_id, base, quote))
    return data[symbol_id]


def _candle_rows(open_times: list[int], cols: list[list[float]], interval: str) -> list[KlineRow]:
    rows = []
    for ot, o, h, lo, c, v in zip(open_times, *cols, strict=True):
        rows.append(
            KlineRow(
                ot,
                float_to_str(o),
                float_to_str(h),
                float_to_str(lo),
                float_to_str(c),
                float_to_str(v),
                next_open(ot, interval) - 1,
                "0",
                0,
                "0",
                "0",
            )
        )
    return rows


def load_freqtrade_candles(path: Path, interval: str) -> list[KlineRow]:
    """A freqtrade OHLCV file (feather, or JSON ``[ts_ms,o,h,l,c,v]`` rows)."""
    if path.suffix == ".json":
        raw = json.loads(path.read_text())
        if not all(isinstance(r, list) and len(r) == 6 for r in raw):
            raise ReplayDataError(f"{path}: every row must be [ts_ms, o, h, l, c, v]")
        cols = [[float(r[i]) for r in raw] for i in range(1, 6)]
        return _candle_rows([int(r[0]) for r in raw], cols, interval)
    frame = pl.read_ipc(path)
    missing = {"date", "open", "high", "low", "close", "volume"} - set(frame.columns)
    if missing:
        raise ReplayDataError(f"{path}: missing columns {sorted(missing)}")
    opens = frame["date"].dt.epoch("ms").to_list()
    cols = [frame[c].to_list() for c in ("open", "high", "low", "close", "volume")]
    return _candle_rows(opens, cols, interval)


def load_freqtrade_trades(path: Path, symbol_id: str) -> TradeBatch:
    """A freqtrade trades file (parquet/feather columns, or gzip JSON rows)."""
    if path.name.endswith(".json.gz"):
        with gzip.open(path, "rt") as fh:
            raw = json.load(fh)
        frame = pl.DataFrame(
            raw, schema=["timestamp", "id", "type", "side", "price", "amount", "cost"], orient="row"
        )
    elif path.suffix == ".parquet":
        frame = pl.read_parquet(path)
    else:
        frame = pl.read_ipc(path)
    frame = frame.with_columns(pl.col("id").cast(pl.Int64)).sort("id")
    sides = frame["side"].to_list()
    if any(s not in ("buy", "sell") for s in sides):
        raise ReplayDataError(f"{path}: side must be 'buy' or 'sell'")
    return TradeBatch(
        symbol_id,
        frame["id"].to_list(),
        frame["timestamp"].to_list(),
        [float_to_str(p) for p in frame["price"].to_list()],
        [float_to_str(q) for q in frame["amount"].to_list()],
        [s == "sell" for s in sides],  # the taker sold: the buyer was the maker
        [float_to_str(c) for c in frame["cost"].to_list()],
    )


def load_nautilus_trades(path: Path, symbol_id: str) -> TradeBatch:
    frame = pl.read_parquet(path).sort("trade_id")
    makers = frame["buyer_maker"].cast(pl.String).to_list()
    if any(m not in ("True", "False", "true", "false") for m in makers):
        raise ReplayDataError(f"{path}: buyer_maker must be 'True' or 'False'")
    prices, qtys = frame["price"].to_list(), frame["quantity"].to_list()
    return TradeBatch(
        symbol_id,
        frame["trade_id"].to_list(),
        frame["timestamp"].dt.epoch("ms").to_list(),
        [float_to_str(p) for p in prices],
        [float_to_str(q) for q in qtys],
        [m.lower() == "true" for m in makers],
        [float_to_str(p * q) for p, q in zip(prices, qtys, strict=True)],
    )


def _levels(raw: object, where: str) -> list[tuple[str, str]]:
    if not isinstance(raw, list) or not all(isinstance(x, list) and len(x) == 2 for x in raw):
        raise ReplayDataError(f"{where}: levels must be [price, qty] pairs")
    return [(str(p), str(q)) for p, q in raw]


def load_cryptofeed_binance(
    ws_path: Path, http_path: Path
) -> dict[str, tuple[DepthSnapshot, list[DepthDiff]]]:
    """Per symbol: the REST depth snapshot and the captured diffs that continue it."""
    snapshots: dict[str, DepthSnapshot] = {}
    for n, line in enumerate(http_path.read_text().splitlines(), 1):
        if " -> " not in line:
            continue
        url, rest = line.split(" -> ", 1)
        body = json.loads(rest.split(": ", 1)[1])
        symbol_id = parse_qs(urlparse(url).query)["symbol"][0]
        where = f"{http_path.name}:{n}"
        snapshots[symbol_id] = DepthSnapshot(
            int(body["lastUpdateId"]), _levels(body["bids"], where), _levels(body["asks"], where)
        )
    diffs: dict[str, list[DepthDiff]] = {s: [] for s in snapshots}
    for n, line in enumerate(ws_path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("wss://"):
            continue
        message = json.loads(line.split(": ", 1)[1])
        data = message.get("data", message)
        if data.get("e") != "depthUpdate" or data.get("s") not in snapshots:
            continue
        where = f"{ws_path.name}:{n}"
        diffs[data["s"]].append(
            DepthDiff(
                data["s"],
                int(data["E"]),
                int(data["U"]),
                int(data["u"]),
                _levels(data["b"], where),
                _levels(data["a"], where),
            )
        )
    out: dict[str, tuple[DepthSnapshot, list[DepthDiff]]] = {}
    for symbol_id, snap in snapshots.items():
        kept = [d for d in diffs[symbol_id] if d.last_id > snap.last_update_id]
        expected = snap.last_update_id + 1
        for i, d in enumerate(kept):  # Binance's rule: first U <= lastUpdateId+1, then U == u+1
            if (d.first_id > expected) if i == 0 else (d.first_id != expected):
                raise ReplayDataError(
                    f"{ws_path.name}: {symbol_id} diff U={d.first_id} "
                    f"u={d.last_id} does not continue update id {expected - 1}"
                )
            expected = d.last_id + 1
        out[symbol_id] = (snap, kept)
    return out


def load_testdata(root: Path) -> dict[str, ReplaySymbolData]:
    """Every replayable symbol found under ``root`` (the layout of ../shared/testdata)."""
    data: dict[str, ReplaySymbolData] = {}
    ft = root / "freqtrade"
    for name, interval, base, quote in (
        ("XRP_ETH-1m.feather", "1m", "XRP", "ETH"),
        ("XRP_ETH-5m.feather", "5m", "XRP", "ETH"),
        ("ETH_BTC-5m.feather", "5m", "ETH", "BTC"),
        ("UNITTEST_BTC-1m.json", "1m", "UNITTEST", "BTC"),
        ("UNITTEST_BTC-30m.feather", "30m", "UNITTEST", "BTC"),
    ):
        if (ft / name).is_file():
            _symbol(data, base, quote).candles[interval] = load_freqtrade_candles(
                ft / name, interval
            )
    if (ft / "XRP_ETH-trades.parquet").is_file():
        _symbol(data, "XRP", "ETH").trades = load_freqtrade_trades(
            ft / "XRP_ETH-trades.parquet", "XRPETH"
        )
    nt = root / "nautilus_trader"
    if (nt / "binance" / "btcusdt-trades.parquet").is_file():
        _symbol(data, "BTC", "USDT").trades = load_nautilus_trades(
            nt / "binance" / "btcusdt-trades.parquet", "BTCUSDT"
        )
    http = nt / "binance_http"
    if (http / "http_spot_market_klines.json").is_file():
        raw = json.loads((http / "http_spot_market_klines.json").read_text())
        _symbol(data, "BTC", "USDT").candles["1m"] = [
            KlineRow(
                int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7], int(r[8]), r[9], r[10]
            )
            for r in raw
        ]
    if (http / "http_spot_market_depth.json").is_file():
        body = json.loads((http / "http_spot_market_depth.json").read_text())
        where = "http_spot_market_depth.json"
        _symbol(data, "BTC", "USDT").snapshot = DepthSnapshot(
            int(body["lastUpdateId"]), _levels(body["bids"], where), _levels(body["asks"], where)
        )
    cf = root / "cryptofeed"
    if (cf / "BINANCE.ws.1.0").is_file() and (cf / "BINANCE.http.0.0").is_file():
        for symbol_id, (snap, diffs) in load_cryptofeed_binance(
            cf / "BINANCE.ws.1.0", cf / "BINANCE.http.0.0"
        ).items():
            entry = _symbol(data, *split_symbol(symbol_id))
            entry.snapshot, entry.diffs = snap, diffs
    log.info("event=replay_data_loaded root=%s symbols=%s", root, ",".join(sorted(data)))
    return data
