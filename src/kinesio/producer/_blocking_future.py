"""The future the blocking ``Producer.put()`` returns: a ``concurrent.futures.Future`` that makes
its ``threading.Condition`` and its lists only when someone needs them.

A plain ``concurrent.futures.Future()`` builds a Condition (an RLock, a deque, bound methods) and
two lists at once: about 5 µs and some seven objects for the garbage collector to walk per
record, though most records are never waited on one at a time (``flush()`` waits for all of
them). This one behaves the same, for every public method and for ``concurrent.futures.wait``
/ ``as_completed``, which all reach the Condition through ``_condition``; it is created on
first use under one module lock, and resolving a future nobody waits on takes that lock
instead, so a waiter that arrives meanwhile either finds the Condition the resolver will
notify or finds the future already resolved.

It relies on ``concurrent.futures.Future``'s internal fields (``_condition``, ``_state``,
``_result``, ``_exception``, ``_waiters``, ``_done_callbacks``, ``_invoke_callbacks``),
unchanged from CPython 3.8 to 3.13; tests/producer/test_blocking_future.py exercises them.
"""

from __future__ import annotations

import concurrent.futures
import threading
from concurrent.futures import _base
from typing import Any

from kinesio._models import PutResult

_CREATE = threading.Lock()
_DONE_STATES = (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED, _base.FINISHED)


class PutFuture(concurrent.futures.Future[PutResult]):
    """A running ``concurrent.futures.Future`` of one record's :class:`PutResult`.

    Created running: ``cancel()`` returns False, as for a call an executor has started, because
    the record is already on its way; its outcome is reported, never dropped.
    """

    def __init__(self) -> None:
        # The base __init__ is skipped on purpose: it builds the Condition this class defers.
        self._state = _base.RUNNING
        self._result: PutResult | None = None
        self._exception: BaseException | None = None
        self._lazy_condition: threading.Condition | None = None
        self._lazy_waiters: list[Any] | None = None
        self._lazy_callbacks: list[Any] | None = None

    # The waiter and callback lists, like the Condition, exist once something is added to them
    # (the base class adds under the Condition).
    @property
    def _waiters(self) -> list[Any]:
        waiters = self._lazy_waiters
        if waiters is None:
            waiters = self._lazy_waiters = []
        return waiters

    @_waiters.setter
    def _waiters(self, waiters: list[Any]) -> None:
        self._lazy_waiters = waiters

    @property
    def _done_callbacks(self) -> list[Any]:
        callbacks = self._lazy_callbacks
        if callbacks is None:
            callbacks = self._lazy_callbacks = []
        return callbacks

    @_done_callbacks.setter
    def _done_callbacks(self, callbacks: list[Any]) -> None:
        self._lazy_callbacks = callbacks

    def done(self) -> bool:
        # The base class takes the Condition to read one field that is only ever replaced.
        return self._state in _DONE_STATES

    @property
    def _condition(self) -> threading.Condition:
        condition = self._lazy_condition
        if condition is None:
            with _CREATE:
                condition = self._lazy_condition
                if condition is None:
                    condition = self._lazy_condition = threading.Condition()
        return condition

    @_condition.setter
    def _condition(self, condition: threading.Condition) -> None:
        self._lazy_condition = condition

    def _resolve_unwatched(self, result: PutResult | None, exception: BaseException | None) -> bool:
        """Resolve without a Condition if none exists yet; False if one does (then the base
        class's path, which notifies it, must run)."""
        if self._lazy_condition is not None:
            return False
        with _CREATE:
            if self._lazy_condition is not None:
                return False
            state = self._state
            if state not in _DONE_STATES:
                self._result = result
                self._exception = exception
                self._state = _base.FINISHED
        if state in _DONE_STATES:  # raised outside the lock: repr() takes the Condition
            raise concurrent.futures.InvalidStateError(f"{state}: {self!r}")
        if self._lazy_callbacks is not None:
            self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def set_result(self, result: PutResult) -> None:
        if not self._resolve_unwatched(result, None):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        if not self._resolve_unwatched(None, exception):
            super().set_exception(exception)
