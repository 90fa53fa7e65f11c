"""The project's Redis: started by the suite, answering on its own port."""

from __future__ import annotations

import dataclasses

import redis

from ats_pipelines.cache.server import ensure_redis


def test_redis_answers_and_ensure_is_idempotent(redis_url: str, settings) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    assert "already running" in ensure_redis(settings)


def test_external_redis_is_left_alone(settings) -> None:
    external = dataclasses.replace(settings, external_redis_url="redis://cache.example:6379/0")
    assert "nothing to start" in ensure_redis(external)
