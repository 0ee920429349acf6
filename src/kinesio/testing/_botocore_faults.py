"""Fault injection for the real aiobotocore path: make an emulator fail the way Kinesis does.

Emulators (moto, kinesis-mock, LocalStack) never throttle and never lose a record, so code that
must survive throttling storms, partial PutRecords failures or dropped connections cannot be
tested against them as they are. :class:`BotocoreFaults` hooks into botocore's event system of an
aiobotocore session (or client) and, for the calls a :class:`~kinesio.testing.Fault` selects:

* answers with an AWS error instead of sending the request (nothing reaches the emulator),
* fails individual PutRecords entries — those entries are removed from the request before it
  is sent and an error entry is put back at their index in the answer, so, as with the real
  service, a failed entry was **not** written and the others were,
* raises the connection errors botocore raises (``EndpointConnectionError``,
  ``ConnectionClosedError``, ``ReadTimeoutError``),
* adds latency, or lets the call take effect and then loses the answer (``response_lost``).

In a test::

    from kinesio import AsyncProducer
    from kinesio.testing import BotocoreFaults, Fault

    async def test_survives_throttling(moto_endpoint):
        faults = BotocoreFaults(
            Fault("PutRecords", "ProvisionedThroughputExceededException", count=10),
            Fault("PutRecords", "InternalFailure", per_record=True, probability=0.2),
            seed=7,
        )
        async with AsyncProducer("stream", aws=faults.aws_config(moto_endpoint)) as producer:
            ...
        assert faults.injected["ProvisionedThroughputExceededException"] == 10
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.session import AioSession

from kinesio._aws import AWSConfig
from kinesio._errors import ConfigurationError
from kinesio.testing._botocore_wire import (
    CONNECTION_CLOSED,
    CONNECTION_CODES,
    READ_TIMEOUT,
    connection_error,
    http_response,
    response_metadata,
    status_for,
)
from kinesio.testing._kinesis import Fault
from kinesio.testing._kinesis._faults import ArmedFault

if TYPE_CHECKING:
    from kinesio.local import LocalEndpoint

__all__ = ["CONNECTION_CLOSED", "READ_TIMEOUT", "BotocoreFaults"]

# Keys of botocore's per-call request context (the dict every event of one API call shares).
_OWNER = "kinesio_faults_owner"
_PLAN = "kinesio_faults_plan"
_LOST = "kinesio_faults_lost"


@dataclasses.dataclass(eq=False)
class _Plan:
    """The PutRecords entries one call fails: index in the caller's request -> (code, message)."""

    total: int
    failed: dict[int, tuple[str, str]]

    @property
    def nothing_to_send(self) -> bool:
        return len(self.failed) == self.total


class BotocoreFaults:
    """Injects :class:`~kinesio.testing.Fault` s into the calls of real aiobotocore clients.

    ``faults`` are checked in order, exactly as :meth:`InMemoryKinesis.inject` checks them:
    ``operation`` is an AWS API name (``"PutRecords"``, ``"ListShards"``, ...) or ``"*"``;
    ``probability`` draws from a random generator seeded with ``seed`` (``None``: unseeded);
    ``count`` is how many times the fault fires (per-record faults: how many entries it fails);
    ``latency`` (seconds, ``asyncio.sleep``) is added before the request goes out.

    ``error_code`` decides what the caller sees:

    * an AWS code (``"ProvisionedThroughputExceededException"``, ``"ThrottlingException"``,
      ``"AccessDeniedException"``, ``"InternalFailure"`` (HTTP 500), ``"ServiceUnavailable"``
      (HTTP 503), ...): the request is not sent; botocore parses a JSON error answer made up
      here, raises its ``ClientError`` and kinesio maps it to its own error. botocore's retry
      handler sees it like a real answer, so a client configured with botocore retries retries it;
    * :data:`~kinesio.testing.CONNECTION_ERROR`: botocore's ``EndpointConnectionError``;
      :data:`CONNECTION_CLOSED` / :data:`READ_TIMEOUT`: ``ConnectionClosedError`` /
      ``ReadTimeoutError``. The request is not sent;
    * ``None``: only the latency.

    ``response_lost=True`` sends the request (it takes effect: records are written) and then
    turns the answer into the error (a connection code becomes ``ConnectionClosedError``), so
    the caller may send the same records again. This happens after botocore's own retries.

    ``per_record=True`` (PutRecords) fails single entries with ``error_code``
    (``"ProvisionedThroughputExceededException"`` or ``"InternalFailure"``): they are removed
    from the request before it is serialized, and the answer gets an ``ErrorCode`` /
    ``ErrorMessage`` entry at each of their indexes and a matching ``FailedRecordCount``. If
    every entry fails, nothing is sent and the answer is made up here. Entries are drawn before
    the whole-call faults of the same call, so a per-record ``count`` is spent even when the
    call then fails as a whole.

    Attach with :meth:`attach` (an ``AioSession`` — before its clients are created, since a
    client copies the session's handlers — or a client) or build a ready config with
    :meth:`aws_config`. One ``BotocoreFaults`` per session or client: a second one on the same
    calls raises ``ConfigurationError``. Faults can be added and cleared while clients run.

    ``calls`` counts API calls by operation; ``injected`` counts the faults that took effect by
    error code (each failed PutRecords entry counts once); ``failed_records`` is the number of
    PutRecords entries failed so far. Not thread-safe: use it from the clients' event loop.
    """

    def __init__(self, *faults: Fault, seed: int | None = 0, service: str = "kinesis") -> None:
        self.service = service
        #: API calls seen, by operation name (``"PutRecords"``, ...).
        self.calls: Counter[str] = Counter()
        #: Faults that took effect, by error code.
        self.injected: Counter[str] = Counter()
        #: PutRecords entries failed by ``per_record`` faults (never sent to the endpoint).
        self.failed_records = 0
        self._rng = random.Random(seed)
        self._armed: list[ArmedFault] = []
        self._attached: list[Callable[..., Any]] = []
        for fault in faults:
            self.inject(fault)

    def __repr__(self) -> str:
        return f"BotocoreFaults(service={self.service!r}, faults={list(self.faults)!r})"

    # -- the faults ------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Add a fault; faults are checked in the order they were injected."""
        if not isinstance(fault, Fault):
            raise ConfigurationError(f"expected a kinesio.testing.Fault, got {fault!r}")
        self._armed.append(ArmedFault(fault, fault.count))

    def remove(self, fault: Fault) -> None:
        """Remove one injected fault (the first equal to ``fault``); the others stay armed.

        Raises ``ConfigurationError`` if it is not armed. With :meth:`inject`, this bounds a
        fault in time: a throttling storm that lasts two seconds, whatever the call rate.
        """
        for i, armed in enumerate(self._armed):
            if armed.fault == fault:
                del self._armed[i]
                return
        raise ConfigurationError(f"{fault!r} is not injected")

    def clear_faults(self) -> None:
        """Remove every fault: calls from now on behave normally (``calls`` keeps counting)."""
        self._armed.clear()

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults that can still fire (``count`` not spent), in order."""
        return tuple(a.fault for a in self._armed if a.remaining != 0)

    # -- attaching -------------------------------------------------------------------------

    def attach(self, target: Any) -> None:
        """Hook into an ``AioSession`` (affects clients it creates from now on) or a client.

        Attaching the same ``BotocoreFaults`` to several sessions or clients is fine; they
        share its faults, counts and random generator.
        """
        if isinstance(target, AioSession):
            register, unregister = target.register, target.unregister
        else:
            events = getattr(getattr(target, "meta", None), "events", None)
            if events is None:
                raise ConfigurationError(
                    f"can attach to an aiobotocore AioSession or client, not {target!r}"
                )
            register, unregister = events.register, events.unregister
        s = self.service
        hooks: Iterable[tuple[str, Callable[..., Any]]] = (
            (f"before-parameter-build.{s}", self._before_parameter_build),
            (f"before-call.{s}.PutRecords", self._before_call),
            (f"before-send.{s}", self._before_send),
            (f"after-call.{s}", self._after_call),
        )
        for event, handler in hooks:
            unique_id = f"kinesio-faults-{id(self)}-{event}"
            register(event, handler, unique_id=unique_id)
            self._attached.append(functools.partial(unregister, event, unique_id=unique_id))

    def detach(self) -> None:
        """Remove the hooks from every session and client this was attached to."""
        while self._attached:
            self._attached.pop()()

    def aws_config(self, base: LocalEndpoint | AWSConfig | None = None) -> AWSConfig:
        """An :class:`~kinesio.AWSConfig` whose session has these faults attached.

        ``base`` is an emulator (:class:`kinesio.local.LocalEndpoint`, e.g. the
        ``moto_endpoint`` fixture) or an ``AWSConfig``; its session, if it has one, is
        attached to (and so changed), otherwise a new ``AioSession`` is made. Pass the result
        as ``aws=`` to ``AsyncProducer`` or ``AioKinesis.create``.
        """
        if base is None:
            base = AWSConfig()
        elif not isinstance(base, AWSConfig):
            base = base.aws_config()
        session = base.new_session()
        self.attach(session)
        return dataclasses.replace(base, session=session)

    # -- drawing ---------------------------------------------------------------------------

    def _whole_call(self, operation: str) -> list[Fault]:
        return [
            armed.fault
            for armed in self._armed
            if armed.fires(operation, self._rng, per_record=False)
        ]

    def _per_record(self, operation: str) -> Fault | None:
        for armed in self._armed:
            if armed.fires(operation, self._rng, per_record=True):
                return armed.fault
        return None

    async def _fire(self, operation: str, context: dict[str, Any] | None) -> Fault | None:
        """Draw the whole-call faults of one attempt and sleep their latency.

        Returns the fault that answers instead of the endpoint; remembers a ``response_lost``
        one in ``context`` for :meth:`_after_call`.
        """
        fired = self._whole_call(operation)
        latency = sum(f.latency for f in fired)
        if latency:
            await asyncio.sleep(latency)
        for fault in fired:
            if fault.error_code is None:
                continue
            if fault.response_lost:
                if context is not None:
                    context.setdefault(_LOST, fault)
                continue
            return fault
        return None

    def _error_answer(self, fault: Fault, url: str) -> AioAWSResponse:
        code = fault.error_code
        assert code is not None
        self.injected[code] += 1
        if code in CONNECTION_CODES:
            raise connection_error(code, url)
        http, _ = http_response(url, status_for(code), {"__type": code, "message": fault.message})
        return http

    # -- botocore event handlers -------------------------------------------------------------

    def _before_parameter_build(
        self, params: dict[str, Any], context: dict[str, Any], event_name: str, **_: Any
    ) -> None:
        owner = context.setdefault(_OWNER, self)
        if owner is not self:
            raise ConfigurationError(
                "two BotocoreFaults are attached to the same client; use one per session/client"
            )
        operation = event_name.rsplit(".", 1)[-1]
        self.calls[operation] += 1
        if operation != "PutRecords":
            return
        records = params.get("Records")
        if not isinstance(records, list) or not records:
            return  # botocore's validation answers this one
        failed: dict[int, tuple[str, str]] = {}
        for i in range(len(records)):
            fault = self._per_record(operation)
            if fault is not None and fault.error_code is not None:
                failed[i] = (fault.error_code, fault.message)
        if not failed:
            return
        plan = _Plan(len(records), failed)
        context[_PLAN] = plan
        if not plan.nothing_to_send:
            # A new list: the caller's own list stays as it was.
            params["Records"] = [r for i, r in enumerate(records) if i not in failed]

    async def _before_call(
        self, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> tuple[AioAWSResponse, dict[str, Any]] | None:
        plan: _Plan | None = context.get(_PLAN)
        if plan is None or not plan.nothing_to_send:
            return None
        # Every entry fails: Kinesis writes nothing, so nothing is sent. Whole-call faults
        # still apply, as they would have in before-send.
        url = str(params.get("url", ""))
        fault = await self._fire("PutRecords", context)
        if fault is not None:
            http = self._error_answer(fault, url)
            body = json.loads(await http.content)
            parsed: dict[str, Any] = {
                "Error": {"Code": body["__type"], "Message": body["message"]},
                "message": body["message"],
                "ResponseMetadata": response_metadata(http, http.headers["x-amzn-RequestId"]),
            }
            return http, parsed
        http, request_id = http_response(url, 200, {"FailedRecordCount": 0, "Records": []})
        parsed = {"FailedRecordCount": 0, "Records": [], "ResponseMetadata": {}}
        parsed["ResponseMetadata"] = response_metadata(http, request_id)
        return http, parsed

    async def _before_send(self, request: Any, event_name: str, **_: Any) -> AioAWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        context = getattr(request, "context", None)
        fault = await self._fire(operation, context if isinstance(context, dict) else None)
        if fault is None:
            return None
        return self._error_answer(fault, str(request.url))

    def _after_call(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        if context.get(_OWNER) is not self:
            return
        ok = int(http_response.status_code) < 300
        plan: _Plan | None = context.pop(_PLAN, None)
        if plan is not None and ok:
            self._splice(plan, parsed)
        lost: Fault | None = context.pop(_LOST, None)
        if lost is None or not ok or lost.error_code is None:
            return
        code = lost.error_code
        self.injected[code] += 1
        url = str(getattr(http_response, "url", ""))
        if code in CONNECTION_CODES:
            raise connection_error(code, url, after_send=True)
        # The call took effect; make botocore raise as if its answer had been an error.
        http_response.status_code = status_for(code)
        metadata = dict(parsed.get("ResponseMetadata", {}))
        metadata["HTTPStatusCode"] = http_response.status_code
        parsed.clear()
        parsed.update(
            {
                "Error": {"Code": code, "Message": lost.message},
                "message": lost.message,
                "ResponseMetadata": metadata,
            }
        )

    def _splice(self, plan: _Plan, parsed: dict[str, Any]) -> None:
        sent = parsed.get("Records")
        if not isinstance(sent, list) or len(sent) != plan.total - len(plan.failed):
            raise AssertionError(
                f"PutRecords answered {len(sent) if isinstance(sent, list) else None} entries "
                f"for the {plan.total - len(plan.failed)} sent: cannot splice injected failures"
            )
        answers = iter(sent)
        merged: list[dict[str, Any]] = []
        for i in range(plan.total):
            failure = plan.failed.get(i)
            if failure is None:
                merged.append(next(answers))
            else:
                code, message = failure
                merged.append({"ErrorCode": code, "ErrorMessage": message})
                self.injected[code] += 1
        self.failed_records += len(plan.failed)
        parsed["Records"] = merged
        parsed["FailedRecordCount"] = int(parsed.get("FailedRecordCount", 0)) + len(plan.failed)
