"""Errors of the exchange layer, each saying what failed and which rule it broke."""

from __future__ import annotations


class ExchangeDataError(ValueError):
    """A payload from an exchange broke a rule; the message names the payload and the rule."""

    def __init__(self, where: str, rule: str, detail: str) -> None:
        super().__init__(f"{where}: {detail} (rule {rule})")
        self.where = where
        self.rule = rule
        self.detail = detail


class PermanentExchangeError(RuntimeError):
    """The exchange refused for a reason retrying cannot fix (bad symbol, credentials, ...)."""


class RetriesExhausted(RuntimeError):
    """A transient error outlasted the retry policy."""
