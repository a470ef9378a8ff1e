"""How the migration leaves gaps in its write-lock holds for a live writer (bench/migrate.py measures the
waits themselves): it pauses only after holding the lock for long, before every long index build that
follows a long hold, and never on a small store."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from webchat.stores.migrations import turns_sqlite
from webchat.stores.migrations.turns_sqlite import migrate_turns_db

LEGACY_DIR = Path(__file__).resolve().parent


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(turns_sqlite.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(turns_sqlite.time, "sleep", fake.sleep)
    return fake


def test_a_small_store_migrates_without_a_single_pause(clock: FakeClock, tmp_path: Path) -> None:
    # Every statement takes no time on the fake clock: nothing ever reaches a threshold.
    for name in ("normalized_pre_cutover.db", "single_table_session.db"):
        store = tmp_path / name
        shutil.copyfile(LEGACY_DIR / name, store)
        report = migrate_turns_db(store, batch_size=1)
        assert report.indexes_created and report.schema_version_after == 3
    assert clock.sleeps == []


def test_the_pacer_pauses_once_the_holds_since_the_last_pause_add_up(clock: FakeClock) -> None:
    pacer = turns_sqlite._LockPacer()

    def hold(seconds: float) -> None:
        def fn(_conn: object) -> None:
            clock.now += seconds

        # run_in_transaction needs a connection; an in-memory one is enough to time a hold.
        conn = sqlite3.connect(":memory:", isolation_level=None)
        try:
            pacer.run(conn, fn)  # type: ignore[arg-type]
        finally:
            conn.close()

    hold(0.25)
    pacer.pause_after(turns_sqlite.YIELD_AFTER_S)
    assert clock.sleeps == []
    hold(0.2)  # 0.45 s held since the last pause
    pacer.pause_after(turns_sqlite.YIELD_AFTER_S)
    assert clock.sleeps == [turns_sqlite.YIELD_FOR_S]
    assert clock.sleeps[0] > 0.1  # longer than the busy handler's polling interval
    pacer.pause_after(turns_sqlite.YIELD_AFTER_S)
    assert len(clock.sleeps) == 1  # the count restarted at the pause
    hold(turns_sqlite.YIELD_BEFORE_LONG_S + 0.05)
    pacer.pause_after(turns_sqlite.YIELD_BEFORE_LONG_S)
    assert len(clock.sleeps) == 2


def test_a_failed_hold_still_counts(clock: FakeClock) -> None:
    pacer = turns_sqlite._LockPacer()
    conn = sqlite3.connect(":memory:", isolation_level=None)

    def fail(_conn: object) -> None:
        clock.now += 0.5
        raise sqlite3.OperationalError("disk I/O error")

    try:
        with pytest.raises(sqlite3.OperationalError):
            pacer.run(conn, fail)  # type: ignore[arg-type]
    finally:
        conn.close()
    assert pacer.held == pytest.approx(0.5)


def test_every_long_index_build_after_a_long_hold_gets_a_gap_before_it(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Make every paced hold (a row batch, an index build) "take" 0.3 s on the fake clock. Then the
    # pacer must pause once the row pass's holds reach 0.4 s, and before every index build, so that no
    # writer ever waits behind an index build that directly follows another long hold.
    store = tmp_path / "turns.db"
    shutil.copyfile(LEGACY_DIR / "normalized_pre_cutover.db", store)
    events: list[tuple[str, float]] = []
    real_run = turns_sqlite._LockPacer.run

    def timed_run(self, conn, fn):  # type: ignore[no-untyped-def]
        def slow(c):  # type: ignore[no-untyped-def]
            result = fn(c)
            clock.now += 0.3
            return result

        events.append((fn.__name__, self.held))  # what was held since the last pause, before this one
        return real_run(self, conn, slow)

    monkeypatch.setattr(turns_sqlite._LockPacer, "run", timed_run)
    report = migrate_turns_db(store, batch_size=1)
    builds = [held for name, held in events if name == "create"]
    batches = [held for name, held in events if name == "batch"]
    assert len(builds) == len(report.indexes_created) >= 2
    assert len(batches) >= 3
    assert all(held == 0.0 for held in builds)  # a pause right before each build
    assert max(batches) == pytest.approx(0.3)  # 0.3 s, then 0.6 s >= 0.4 s: pause
    assert len(clock.sleeps) >= len(builds) + len(batches) // 2 - 1
