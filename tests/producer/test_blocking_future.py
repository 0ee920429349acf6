"""PutFuture: a concurrent.futures.Future whose Condition and lists are made on first use."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from kinesio._errors import RecordExpiredError
from kinesio._models import PutResult
from kinesio.producer._blocking_future import PutFuture

RESULT = PutResult("shardId-000000000000", "1", 0, 1)


def test_it_is_a_running_concurrent_future_that_cannot_be_cancelled() -> None:
    f = PutFuture()
    assert isinstance(f, concurrent.futures.Future)
    assert f.running()
    assert not f.done()
    assert not f.cancel()
    f.set_result(RESULT)
    assert f.done()
    assert f.result(timeout=0) == RESULT
    assert f.exception(timeout=0) is None


def test_an_exception_reaches_result_and_exception() -> None:
    f = PutFuture()
    err = RecordExpiredError("expired", last_error="x", attempts=2)
    f.set_exception(err)
    assert f.exception(timeout=0) is err
    with pytest.raises(RecordExpiredError):
        f.result(timeout=0)


def test_resolving_twice_raises_invalid_state() -> None:
    f = PutFuture()
    f.set_result(RESULT)
    with pytest.raises(concurrent.futures.InvalidStateError):
        f.set_result(RESULT)
    with pytest.raises(concurrent.futures.InvalidStateError):
        f.set_exception(ValueError("late"))


def test_result_times_out_while_pending() -> None:
    f = PutFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.01)
    f.set_result(RESULT)  # the Condition made by the waiter is notified
    assert f.result(timeout=0) == RESULT


def test_callbacks_run_once_whether_added_before_or_after() -> None:
    f = PutFuture()
    seen: list[str] = []
    f.add_done_callback(lambda fut: seen.append("before"))
    f.set_result(RESULT)
    f.add_done_callback(lambda fut: seen.append("after"))
    assert seen == ["before", "after"]
    g = PutFuture()
    g.set_exception(ValueError("x"))
    g.add_done_callback(lambda fut: seen.append(type(fut.exception()).__name__))
    assert seen[-1] == "ValueError"


def test_a_waiting_thread_is_woken_by_a_resolver_in_another_thread() -> None:
    # Many rounds of a waiter racing a resolver: a waiter must never hang or time out wrongly,
    # whichever of the two makes the Condition first.
    for _ in range(300):
        f = PutFuture()
        got: list[PutResult] = []
        waiter = threading.Thread(target=lambda f=f, got=got: got.append(f.result(timeout=5)))
        waiter.start()
        f.set_result(RESULT)
        waiter.join(5)
        assert not waiter.is_alive()
        assert got == [RESULT]


def test_wait_and_as_completed_see_futures_resolved_later() -> None:
    futures = [PutFuture() for _ in range(20)]

    def resolve() -> None:
        for f in futures:
            time.sleep(0.001)
            f.set_result(RESULT)

    t = threading.Thread(target=resolve)
    t.start()
    done, not_done = concurrent.futures.wait(futures, timeout=5)
    assert len(done) == 20
    assert not not_done
    assert len(list(concurrent.futures.as_completed(futures, timeout=5))) == 20
    t.join()
    pending = [PutFuture(), PutFuture()]
    first = threading.Timer(0.02, lambda: pending[1].set_exception(ValueError("x")))
    first.start()
    done, not_done = concurrent.futures.wait(
        pending, timeout=5, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    assert done == {pending[1]}
    assert not_done == {pending[0]}
    first.join()
