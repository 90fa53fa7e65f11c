"""The live signal service as its own process for ``bench_signals.py`` (as ``ats signals run``
runs it in production): settings as JSON in argv[1] (no secrets: the database and Redis URLs
come from the environment's settings), runs until SIGTERM, prints its summary as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ats_pipelines.config import load_settings
from ats_pipelines.db.connect import replace_database
from ats_pipelines.signals.config import (
    DEFAULT_TREND_PARAMS,
    CoordinatorRules,
    SignalsSettings,
    parse_trend_params,
)
from ats_pipelines.signals.live import LiveConfig, SignalService


def main() -> None:
    spec = json.loads(sys.argv[1])
    settings = load_settings({**os.environ, "ATS_ENV": "test"})
    signals = SignalsSettings(
        exchange=spec["exchange"],
        symbols=tuple(spec["symbols"]),
        timeframes=tuple(spec["timeframes"]),
        analyzer_id="bench_live",
        trend_params=parse_trend_params(spec["trend_params"], DEFAULT_TREND_PARAMS),
        coordinator=CoordinatorRules("bench_live", timeframes=tuple(spec["timeframes"])),
    )
    config = LiveConfig(
        database_url=replace_database(settings.database_url, spec["database"]),
        redis_url=settings.redis_url,
        service_id="bench",
        sweep_interval_s=600.0,
        heartbeat_interval_s=1.0,
    )
    service = SignalService(signals, config, install_signal_handlers=True)
    summary = asyncio.run(service.run())
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
