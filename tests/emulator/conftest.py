from ats_pipelines.emulator.fixtures import make_ccxt, make_emulator  # noqa: F401
