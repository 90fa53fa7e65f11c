"""Feast objects of the platform (built by ``ats_pipelines.features.repo`` from the catalog).

The feature files are read from the Parquet lake (``ATS_LAKE_DIR``, default ``.ats/lake``).
Feast collects the module-level objects below; add features in the catalog
(``ats_pipelines/features/catalog.py``), not here.
"""

from ats_pipelines.config import load_settings
from ats_pipelines.features.repo import build_repo

_repo = build_repo(load_settings().lake_dir)

symbol = _repo.entities["symbol"]
exchange = _repo.entities["exchange"]

features_1m = _repo.views["features_1m"]
features_5m = _repo.views["features_5m"]
features_15m = _repo.views["features_15m"]
features_1h = _repo.views["features_1h"]
features_4h = _repo.views["features_4h"]

signals_v1 = _repo.services["signals_v1"]
context_v1 = _repo.services["context_v1"]
