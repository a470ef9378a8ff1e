"""What only the PostgreSQL timeline and prompt stores do: refuse an unmigrated database, leave the database
to its owner, refuse writes read-only, and settle an idempotency-key race between two transactions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import migrate
from webchat.stores.postgres.prompt_store import COMPONENTS, PostgresPromptStore
from webchat.stores.postgres.timeline_store import COMPONENT as TIMELINE
from webchat.stores.postgres.timeline_store import PostgresTimelineStore
from webchat.stores.prompts import IdempotencyKeyReused, NewPrompt, PromptRecord
from webchat.stores.protocol import StoreError
from webchat.stores.timeline import ConversationRecord, Entity


@pytest.fixture
def db(pg_dsn: str) -> Iterator[Database]:
    database = Database(pg_dsn, max_size=4)
    try:
        yield database
    finally:
        database.close()


def prompt(turn_id: str, conv_id: str, key: str) -> NewPrompt:
    return NewPrompt(
        conv_id=conv_id,
        turn_id=turn_id,
        session_id="s",
        prompt="hello",
        runtime_key="fast",
        runtime_fingerprint="fp",
        runtime={},
        idempotency_key=key,
        response_status=202,
        response={},
        accepted_at_ms=1,
        user_id="u",
    )


def test_an_unmigrated_database_is_refused_with_the_command_that_fixes_it(db: Database) -> None:
    hint = r"the timeline schema is not migrated \(version 0 of 1\); run `web-chat db migrate"
    with pytest.raises(StoreError, match=hint):
        PostgresTimelineStore(db)
    migrate(db, [TIMELINE])
    PostgresTimelineStore(db).close()
    with pytest.raises(StoreError, match=r"the prompts schema is not migrated \(version 0 of 1\)"):
        PostgresPromptStore(db)
    assert [a.component for a in migrate(db, COMPONENTS)] == ["prompts"]
    PostgresPromptStore(db).close()


def test_closing_a_store_leaves_the_database_to_its_owner(db: Database) -> None:
    migrate(db, COMPONENTS)
    timeline, prompts = PostgresTimelineStore(db), PostgresPromptStore(db)
    timeline.apply("c", 1, [])
    timeline.close()
    prompts.close()
    with pytest.raises(StoreError, match="timeline store is closed"):
        timeline.current_version("c")
    with pytest.raises(StoreError, match="prompt store is closed"):
        prompts.get("c", "t")
    again = PostgresTimelineStore(db)
    assert again.current_version("c") == 1
    again.close()


def test_a_readonly_store_reads_and_refuses_writes(db: Database) -> None:
    migrate(db, COMPONENTS)
    PostgresTimelineStore(db).apply("c", 3, [Entity("m", "message", 1, 1, 0, {"x": 1})])
    store = PostgresTimelineStore(db, readonly=True)
    assert store.readonly and not PostgresTimelineStore(db).readonly
    assert store.current_version("c") == 3
    for write in (
        lambda: store.apply("c", 4, []),
        lambda: store.reserve_seq("c", 9),
        lambda: store.set_pointer("c", "k", 1),
        lambda: store.upsert_conversation(ConversationRecord("c")),
    ):
        with pytest.raises(StoreError, match="timeline store is open read-only"):
            write()
    assert store.current_version("c") == 3 and store.reserved_seq("c") == 0


def _wait_for_lock_wait(dsn: str, deadline_s: float = 30.0) -> None:
    """Until a session of the database waits on a lock (the acceptance, blocked on the key's index entry)."""
    stop = time.monotonic() + deadline_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < stop:
            row = conn.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0] > 0:
                return
            time.sleep(0.01)
    raise AssertionError("the acceptance never waited on the other transaction")


def test_a_key_race_lost_at_the_unique_index_retries_and_finds_the_winner(db: Database, pg_dsn: str) -> None:
    """The other transaction inserted the same key (for another conversation) and has not committed: the
    acceptance waits at the unique index, then, once it commits, retries and refuses the reused key."""
    migrate(db, COMPONENTS)
    store = PostgresPromptStore(db)
    outcome: list[object] = []
    with psycopg.connect(pg_dsn) as other:
        other.execute(
            "INSERT INTO webchat_prompts "
            "(conv_id, position, turn_id, user_id, accept_seq, prompt, idempotency_key) "
            "VALUES ('c-winner', 1, 't-winner', 'u', nextval('webchat_prompts_accept_seq'), 'hello', 'k')"
        )

        def run() -> None:
            try:
                outcome.append(store.accept(prompt("t-loser", "c-loser", "k"), ConversationRecord("c-loser")))
            except BaseException as exc:  # asserted below
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        _wait_for_lock_wait(pg_dsn)
        other.commit()
        thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], IdempotencyKeyReused)
    assert "already used for another conversation" in str(outcome[0])
    # Nothing of the loser stays: no prompt, no conversation index row.
    assert store.get("c-loser", "t-loser") is None
    assert PostgresTimelineStore(db).get_conversation("c-loser") is None
    # The key names the winner's row.
    winner = store.find_key("u", "k")
    assert isinstance(winner, PromptRecord) and (winner.conv_id, winner.turn_id) == ("c-winner", "t-winner")
