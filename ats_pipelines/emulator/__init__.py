"""Binance-protocol exchange emulator (and Birdeye DEX API) on loopback, for tests and demos."""
