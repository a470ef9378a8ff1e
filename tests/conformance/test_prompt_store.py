"""The PromptStore contract, on SQLite and PostgreSQL alike: acceptance, replay and refused keys, the
status machine, one running prompt per conversation, orders, settling; and the same under threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.backends import BACKENDS, Stores, open_stores
from webchat.stores.prompts import (
    IdempotencyKeyReused,
    NewPrompt,
    PromptRecord,
    PromptStateError,
    PromptStore,
    Settle,
)
from webchat.stores.timeline import ConversationRecord


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    with open_stores(request.param, tmp_path, request, pool=8) as stores:
        yield stores


def new(
    turn_id: str,
    conv_id: str = "c1",
    key: str | None = None,
    *,
    prompt: str = "hello",
    user_id: str = "u1",
    at: int = 1000,
    inference_id: str = "",
    settles: Settle | None = None,
    conv_id_given: bool = True,
) -> NewPrompt:
    return NewPrompt(
        conv_id=conv_id,
        turn_id=turn_id,
        session_id=f"s-{conv_id}",
        prompt=prompt,
        runtime_key="fast",
        runtime_fingerprint="fp-fast",
        runtime={"runtime_key": "fast", "options": {"temperature": 0.5}, "name": "Fäst"},
        idempotency_key=key or f"k-{turn_id}",
        response_status=200 if inference_id else 202,
        response={"turn_id": turn_id, "status": "started" if inference_id else "queued"},
        accepted_at_ms=at,
        user_id=user_id,
        conv_id_given=conv_id_given,
        inference_id=inference_id,
        settles=settles,
    )


def index(
    conv_id: str = "c1", runtime_key: str = "fast", at: int = 1000, owner: str = "u1"
) -> ConversationRecord:
    return ConversationRecord(
        conv_id=conv_id,
        session_id=f"s-{conv_id}",
        runtime_key=runtime_key,
        created_at_ms=at,
        last_activity_ms=at,
        owner_id=owner,
    )


def accept(s: Stores, prompt: NewPrompt) -> PromptRecord:
    record, replayed = s.prompts.accept(prompt, index(prompt.conv_id, at=prompt.accepted_at_ms))
    assert replayed is False
    return record


def summary(records: list[PromptRecord]) -> list[tuple[str, str, int, int, str]]:
    return [(r.conv_id, r.turn_id, r.position, r.accept_seq, r.status) for r in records]


def test_is_a_prompt_store(store: Stores) -> None:
    assert isinstance(store.prompts, PromptStore)


def test_accept_stores_the_prompt_and_moves_the_pointer_in_one_go(store: Stores) -> None:
    assert store.timeline.get_conversation("c1") is None
    record, replayed = store.prompts.accept(new("t1"), index(runtime_key="planner", owner="u1"))
    expected = PromptRecord(
        conv_id="c1",
        position=1,
        turn_id="t1",
        session_id="s-c1",
        user_id="u1",
        accept_seq=1,
        prompt="hello",
        runtime_key="fast",
        runtime_fingerprint="fp-fast",
        runtime={"runtime_key": "fast", "options": {"temperature": 0.5}, "name": "Fäst"},
        idempotency_key="k-t1",
        status="queued",
        inference_id="",
        response_status=202,
        response={"turn_id": "t1", "status": "queued"},
        error_code="",
        accepted_at_ms=1000,
        started_at_ms=0,
        finished_at_ms=0,
    )
    assert (record, replayed) == (expected, False)
    assert store.prompts.get("c1", "t1") == expected
    assert store.prompts.find_key("u1", "k-t1") == expected
    assert store.timeline.get_conversation("c1") == ConversationRecord(
        "c1", "s-c1", "planner", 1000, 1000, 0, True, "active", "", "u1"
    )
    # The JSON documents are stored as compact text with sorted keys, the same bytes on every backend.
    assert store.rows("SELECT runtime_json, response_json FROM webchat_prompts") == [
        (
            '{"name":"Fäst","options":{"temperature":0.5},"runtime_key":"fast"}',
            '{"status":"queued","turn_id":"t1"}',
        )
    ]


def test_a_prompt_that_starts_at_once_is_accepted_running(store: Stores) -> None:
    record = accept(store, new("t1", inference_id="inf-1", at=1500))
    assert (record.status, record.inference_id, record.started_at_ms, record.response_status) == (
        "running",
        "inf-1",
        1500,
        200,
    )
    assert store.prompts.get("c1", "t1") == record


def test_a_retry_with_the_same_key_replays_and_changes_nothing(store: Stores) -> None:
    first = accept(store, new("t1"))
    again, replayed = store.prompts.accept(
        replace(new("t1-retry", key="k-t1", at=9999), session_id="other"),
        index(runtime_key="planner", at=9999),
    )
    assert (again, replayed) == (first, True)
    assert summary(store.prompts.conversation_prompts("c1")) == [("c1", "t1", 1, 1, "queued")]
    rec = store.timeline.get_conversation("c1")
    assert rec is not None and (rec.runtime_key, rec.last_activity_ms) == ("fast", 1000)
    # A retry without a conversation (the client did not name it) still finds the key.
    other_conv, replayed = store.prompts.accept(
        new("t9", "c-new", "k-t1", conv_id_given=False), index("c-new")
    )
    assert (other_conv, replayed) == (first, True)
    assert store.prompts.conversation_prompts("c-new") == []
    assert store.timeline.get_conversation("c-new") is None


def test_a_key_reused_for_another_conversation_or_text_is_refused(store: Stores) -> None:
    accept(store, new("t1"))
    with pytest.raises(
        IdempotencyKeyReused, match=r"idempotency key 'k-t1' was already used for another conversation"
    ):
        store.prompts.accept(new("t2", "c2", "k-t1"), index("c2"))
    with pytest.raises(
        IdempotencyKeyReused, match=r"idempotency key 'k-t1' was already used for another prompt"
    ):
        store.prompts.accept(new("t2", "c1", "k-t1", prompt="something else"), index())
    assert summary(store.prompts.by_status("queued", "running")) == [("c1", "t1", 1, 1, "queued")]
    assert store.timeline.get_conversation("c2") is None
    with pytest.raises(ValueError, match="a prompt needs an idempotency key"):
        store.prompts.accept(replace(new("t3"), idempotency_key=""), index())


def test_idempotency_keys_are_scoped_to_the_user(store: Stores) -> None:
    alice = accept(store, new("t1", key="same", user_id="alice"))
    bob = accept(store, new("t2", "c2", key="same", user_id="bob"))
    assert (alice.accept_seq, bob.accept_seq) == (1, 2)
    assert store.prompts.find_key("alice", "same") == alice
    assert store.prompts.find_key("bob", "same") == bob
    assert store.prompts.find_key("carol", "same") is None


def test_one_running_prompt_per_conversation_at_acceptance(store: Stores) -> None:
    accept(store, new("t1", inference_id="inf-1"))
    with pytest.raises(PromptStateError, match="conversation c1 already runs prompt t1; one at a time"):
        store.prompts.accept(new("t2", inference_id="inf-2"), index())
    assert store.prompts.get("c1", "t2") is None  # nothing of a refused acceptance stays
    # Queued behind it, or running in another conversation, is fine.
    assert accept(store, new("t3")).position == 2
    assert accept(store, new("t4", "c2", inference_id="inf-4")).status == "running"
    assert summary(store.prompts.by_status("running", "queued")) == [
        ("c1", "t1", 1, 1, "running"),
        ("c1", "t3", 2, 2, "queued"),
        ("c2", "t4", 1, 3, "running"),
    ]


def test_mark_running_and_finish_follow_the_state_machine(store: Stores) -> None:
    accept(store, new("t1", at=1))
    accept(store, new("t2", at=2))
    accept(store, new("t3", at=3))
    started = store.prompts.mark_running("c1", "t1", "inf-1", 10)
    assert (started.status, started.inference_id, started.started_at_ms) == ("running", "inf-1", 10)
    assert store.prompts.get("c1", "t1") == started
    with pytest.raises(PromptStateError, match="conversation c1 already runs prompt t1; one at a time"):
        store.prompts.mark_running("c1", "t2", "inf-2", 11)
    with pytest.raises(PromptStateError, match="prompt t1 is running; it cannot become running"):
        store.prompts.mark_running("c1", "t1", "inf-1b", 11)
    with pytest.raises(PromptStateError, match="prompt t2 is queued; it cannot become done"):
        store.prompts.finish("c1", "t2", "done", "", 11)
    with pytest.raises(PromptStateError, match="no prompt nope in conversation c1"):
        store.prompts.mark_running("c1", "nope", "i", 1)
    with pytest.raises(PromptStateError, match="no prompt t1 in conversation c2"):
        store.prompts.finish("c2", "t1", "done", "", 1)
    with pytest.raises(ValueError, match="a running prompt needs its inference id"):
        store.prompts.mark_running("c1", "t2", "", 11)
    with pytest.raises(ValueError, match="not a final status: 'running'"):
        store.prompts.finish("c1", "t1", "running", "", 11)

    done = store.prompts.finish("c1", "t1", "done", "", 20)
    assert (done.status, done.error_code, done.finished_at_ms) == ("done", "", 20)
    # Finishing again with the same end changes nothing; another end is refused.
    assert store.prompts.finish("c1", "t1", "done", "", 25) == done
    with pytest.raises(PromptStateError, match="prompt t1 is done; it cannot become failed"):
        store.prompts.finish("c1", "t1", "failed", "x", 26)
    assert store.prompts.get("c1", "t1") == done

    store.prompts.mark_running("c1", "t2", "inf-2", 30)  # t1 ended: the next one may run
    failed = store.prompts.finish("c1", "t2", "failed", "interrupted", 31)
    assert (failed.status, failed.error_code) == ("failed", "interrupted")
    not_run = store.prompts.finish("c1", "t3", "not_run", "not_run", 32)
    assert (not_run.status, not_run.started_at_ms, not_run.finished_at_ms) == ("not_run", 0, 32)
    with pytest.raises(PromptStateError, match="prompt t3 is not_run; it cannot become running"):
        store.prompts.mark_running("c1", "t3", "inf-3", 33)
    assert [(r.turn_id, r.status, r.error_code) for r in store.prompts.conversation_prompts("c1")] == [
        ("t1", "done", ""),
        ("t2", "failed", "interrupted"),
        ("t3", "not_run", "not_run"),
    ]


def test_cancelling_a_queued_or_running_prompt(store: Stores) -> None:
    accept(store, new("t1", inference_id="inf-1"))
    accept(store, new("t2"))
    assert store.prompts.finish("c1", "t2", "cancelled", "cancelled", 5).status == "cancelled"
    assert store.prompts.finish("c1", "t1", "cancelled", "cancelled", 6).status == "cancelled"
    assert store.prompts.by_status("running", "queued") == []
    assert [r.turn_id for r in store.prompts.by_status("cancelled")] == ["t1", "t2"]


def test_by_status_is_in_acceptance_order_across_conversations(store: Stores) -> None:
    for n, conv in enumerate(("c2", "c1", "c3", "c1", "c2"), 1):
        accept(store, new(f"t{n}", conv, at=n))
    store.prompts.mark_running("c1", "t2", "inf-2", 10)
    store.prompts.mark_running("c3", "t3", "inf-3", 10)
    assert summary(store.prompts.by_status("queued")) == [
        ("c2", "t1", 1, 1, "queued"),
        ("c1", "t4", 2, 4, "queued"),
        ("c2", "t5", 2, 5, "queued"),
    ]
    assert summary(store.prompts.by_status("running")) == [
        ("c1", "t2", 1, 2, "running"),
        ("c3", "t3", 1, 3, "running"),
    ]
    assert [r.turn_id for r in store.prompts.by_status("running", "queued")] == ["t1", "t2", "t3", "t4", "t5"]
    assert store.prompts.by_status() == []
    assert store.prompts.by_status("done") == []


def test_conversation_prompts_are_in_queue_order(store: Stores) -> None:
    for n in range(1, 5):
        accept(store, new(f"a{n}", "ca", at=10 - n))
        accept(store, new(f"b{n}", "cb", at=n))
    assert [(r.turn_id, r.position, r.accept_seq) for r in store.prompts.conversation_prompts("ca")] == [
        ("a1", 1, 1),
        ("a2", 2, 3),
        ("a3", 3, 5),
        ("a4", 4, 7),
    ]
    assert [r.position for r in store.prompts.conversation_prompts("cb")] == [1, 2, 3, 4]
    assert store.prompts.conversation_prompts("unknown") == []


def test_last_finished_is_the_latest_prompt_that_ran_and_ended(store: Stores) -> None:
    assert store.prompts.last_finished("c1") is None
    for n in range(1, 5):
        accept(store, new(f"t{n}", at=n))
    store.prompts.mark_running("c1", "t1", "inf-1", 10)
    assert store.prompts.last_finished("c1") is None  # running has not ended
    store.prompts.finish("c1", "t1", "done", "", 11)
    store.prompts.mark_running("c1", "t2", "inf-2", 12)
    store.prompts.finish("c1", "t2", "failed", "boom", 13)
    store.prompts.finish("c1", "t3", "not_run", "not_run", 14)  # never ran: holds no history
    store.prompts.finish("c1", "t4", "cancelled", "cancelled", 15)
    last = store.prompts.last_finished("c1")
    assert last is not None and (last.turn_id, last.status, last.error_code) == ("t2", "failed", "boom")
    assert store.prompts.last_finished("c2") is None


def test_accepting_the_next_prompt_can_settle_the_running_one(store: Stores) -> None:
    accept(store, new("t1", inference_id="inf-1", at=1))
    accept(store, new("t2", at=2))
    store.prompts.finish("c1", "t2", "not_run", "not_run", 3)
    with pytest.raises(ValueError, match="not a final status: 'running'"):
        store.prompts.accept(new("t3", inference_id="inf-3", settles=Settle("t1", "running", "", 9)), index())
    with pytest.raises(PromptStateError, match="no prompt nope in conversation c1"):
        store.prompts.accept(new("t3", inference_id="inf-3", settles=Settle("nope", "done", "", 9)), index())
    with pytest.raises(PromptStateError, match="prompt t2 is not_run; it cannot become done"):
        store.prompts.accept(new("t3", inference_id="inf-3", settles=Settle("t2", "done", "", 9)), index())
    assert store.prompts.get("c1", "t3") is None  # nothing of a refused acceptance stays
    t1 = store.prompts.get("c1", "t1")
    assert t1 is not None and t1.status == "running"

    record = accept(store, new("t3", inference_id="inf-3", at=9, settles=Settle("t1", "failed", "boom", 9)))
    assert (record.position, record.accept_seq, record.status, record.started_at_ms) == (3, 3, "running", 9)
    t1 = store.prompts.get("c1", "t1")
    assert t1 is not None and (t1.status, t1.error_code, t1.finished_at_ms) == ("failed", "boom", 9)
    # The worker records the same end afterwards: a no-op, the first record stands.
    assert store.prompts.finish("c1", "t1", "failed", "boom", 12) == t1
    with pytest.raises(PromptStateError, match="prompt t1 is failed; it cannot become done"):
        store.prompts.finish("c1", "t1", "done", "", 13)
    # Settling a prompt that already ended the same way is allowed (the worker was first).
    store.prompts.finish("c1", "t3", "done", "", 20)
    fourth = accept(store, new("t4", inference_id="inf-4", at=21, settles=Settle("t3", "done", "", 21)))
    assert fourth.status == "running"
    t3 = store.prompts.get("c1", "t3")
    assert t3 is not None and t3.finished_at_ms == 20


# -- concurrency --------------------------------------------------------------------------------------

THREADS = 6


def run_together(fn: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """``fn(0..THREADS-1)`` on as many threads, released together; returns results and errors."""
    start = threading.Barrier(THREADS)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        start.wait()
        try:
            result = fn(n)
        except BaseException as exc:  # collected and asserted by the test
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_acceptances_get_distinct_positions_and_increasing_accept_seqs(store: Stores) -> None:
    def burst(n: int) -> list[PromptRecord]:
        return [accept(store, new(f"t{n}-{i}", "c1" if i % 2 else "c2", at=n)) for i in range(4)]

    results, errors = run_together(burst)
    assert errors == []
    for conv in ("c1", "c2"):
        rows = store.prompts.conversation_prompts(conv)
        assert [r.position for r in rows] == list(range(1, 2 * THREADS + 1))
        # Queue order and acceptance order agree within a conversation.
        assert [r.accept_seq for r in rows] == sorted(r.accept_seq for r in rows)
    every = store.prompts.by_status("queued")
    assert len(every) == 4 * THREADS
    seqs = [r.accept_seq for r in every]
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)
    returned = sorted((r.conv_id, r.position, r.accept_seq) for batch in results for r in batch)
    assert returned == sorted((r.conv_id, r.position, r.accept_seq) for r in every)


def test_concurrent_starts_leave_one_running_prompt(store: Stores) -> None:
    results, errors = run_together(lambda n: accept(store, new(f"t{n}", inference_id=f"inf-{n}")))
    assert len(results) == 1 and len(errors) == THREADS - 1
    assert {type(e) for e in errors} == {PromptStateError}
    assert [(r.turn_id, r.status) for r in store.prompts.conversation_prompts("c1")] == [
        (results[0].turn_id, "running")
    ]

    for n in range(THREADS):
        accept(store, new(f"q{n}"))
    store.prompts.finish("c1", results[0].turn_id, "done", "", 5)
    started, refused = run_together(lambda n: store.prompts.mark_running("c1", f"q{n}", f"inf-q{n}", 6))
    assert len(started) == 1 and len(refused) == THREADS - 1
    assert all(isinstance(e, PromptStateError) and "already runs" in str(e) for e in refused)
    assert [r.turn_id for r in store.prompts.by_status("running")] == [started[0].turn_id]


def test_concurrent_retries_of_one_key_accept_once(store: Stores) -> None:
    results, errors = run_together(lambda n: store.prompts.accept(new(f"t{n}", key="k"), index()))
    assert errors == []
    assert sorted(replayed for _, replayed in results) == [False] + [True] * (THREADS - 1)
    assert all(record == results[0][0] for record, _ in results)
    assert len(store.prompts.conversation_prompts("c1")) == 1


def test_concurrent_uses_of_one_key_for_several_conversations_accept_one(store: Stores) -> None:
    results, errors = run_together(lambda n: store.prompts.accept(new(f"t{n}", f"c{n}", "k"), index(f"c{n}")))
    assert [replayed for _, replayed in results] == [False]
    assert len(errors) == THREADS - 1 and {type(e) for e in errors} == {IdempotencyKeyReused}
    winner = results[0][0]
    assert summary(store.prompts.by_status("queued")) == [
        (winner.conv_id, winner.turn_id, 1, winner.accept_seq, "queued")
    ]
    assert [r.conv_id for r in store.timeline.list_conversations()] == [winner.conv_id]
