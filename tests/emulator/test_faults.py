"""The fault injector on its own: schedules, counts, and what each fault does to events."""

from __future__ import annotations

from ats_pipelines.emulator.faults import MALFORMED_FRAMES, FaultConfig, Faults, RestFault


def test_duplicates_and_reordering_keep_every_event() -> None:
    faults = Faults(FaultConfig(duplicate_every=4, reorder_every=6))
    events = [f"e{i}" for i in range(60)]
    out = faults.mangle_trades(events[:25]) + faults.mangle_trades(events[25:])
    assert set(out) == set(events)
    assert len(out) == 60 + faults.counts["trades_duplicated"] > 60
    assert faults.counts["trades_reordered"] == 10
    assert out != sorted(out, key=lambda e: int(e[1:]))


def test_untouched_when_off() -> None:
    events = ["a", "b", "c"]
    assert Faults().mangle_trades(events) is events


def test_rest_faults_every_nth_and_on_demand() -> None:
    faults = Faults(FaultConfig(rest_429_every=3, retry_after_s=2.5))
    served = [faults.rest_fault() for _ in range(6)]
    assert [f is not None for f in served] == [False, False, True, False, False, True]
    assert served[2] == RestFault(retry_after_s=2.5)
    faults.fail_next_rest(2, RestFault(status=418, code=-1003, msg="banned", retry_after_s=9))
    assert [faults.rest_fault().status for _ in range(2)] == [418, 418]  # type: ignore[union-attr]
    assert faults.counts["rest_faults"] == 4


def test_gaps_malformed_frames_drops_and_jumps_follow_the_schedule() -> None:
    faults = Faults(
        FaultConfig(
            gap_every=5,
            malformed_every=10,
            drop_every_s=2.0,
            drop_at_s=(0.5,),
            time_jump_at_s=1.0,
            time_jump_ms=-5000,
        )
    )
    skipped = [faults.skip_diff("BTCUSDT") for _ in range(10)]
    assert skipped == [False] * 4 + [True] + [False] * 4 + [True]
    faults.skip_next_diff("ETHUSDT")
    assert faults.skip_diff("ETHUSDT") and not faults.skip_diff("ETHUSDT")
    assert faults.malformed_frames(25) == list(MALFORMED_FRAMES[:2])
    faults.inject_malformed(1)
    assert faults.malformed_frames(0) == [MALFORMED_FRAMES[2]]
    assert [faults.drop_due(t) for t in (0.1, 0.6, 0.7, 2.1, 2.2, 4.0)] == [
        False,
        True,
        False,
        True,
        False,
        True,
    ]
    assert [faults.time_jump_due(t) for t in (0.5, 1.0, 2.0)] == [0, -5000, 0]


def test_latency_stays_within_latency_plus_jitter() -> None:
    faults = Faults(FaultConfig(latency_ms=20, jitter_ms=10, seed=3))
    delays = [faults.latency_s() for _ in range(500)]
    assert min(delays) >= 0.020 and max(delays) <= 0.030
    assert len(set(delays)) > 400
    again = Faults(FaultConfig(latency_ms=20, jitter_ms=10, seed=3))
    assert [again.latency_s() for _ in range(500)] == delays  # seeded: reproducible
    assert Faults().latency_s() == 0.0
