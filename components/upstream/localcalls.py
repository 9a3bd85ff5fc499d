"""CALLs of the node's own in-process procedures answered without an INVOCATION round trip
(one patch: ``localcalls.direct``).

A client's CALL of a procedure that a router component of the same worker registered goes,
in Crossbar, through the whole callee protocol although caller and callee share one process:
the dealer makes an invocation request (an id, its records by caller, callee and call), an
INVOCATION message, hands it to the component's pass-through transport
(``RouterApplicationSession.send``), whose Autobahn session looks the registration up, makes
the call details, calls the function through a Deferred, makes a YIELD, sends it back through
the pass-through transport to the dealer, which looks the invocation up, makes the RESULT,
drops its records, and only then writes the answer. Every receiver calls ``deptcast.ack``
about once a second: with 500 receivers acknowledging, more than half of the router worker's
samples were in ``Dealer.processCall`` and what it sets off (``bench/receipts.py``), most of
it this round trip.

For the procedures of :data:`DIRECT` the patch keeps the dealer's own steps up to the choice
of callee (the router's authorization, with its cache, answered and refused exactly as
upstream; the payload validation; "no callee registered") and then, when the one callee is a
router component in this worker, calls its registered function directly with the call details
Autobahn would give it (caller disclosed as the authorization says), and writes the RESULT
(the callee disclosed, as upstream does) or the ERROR (the exception turned into an error
message by the callee session itself, as Autobahn does, without the callee disclosed, as
Crossbar does). Anything else takes upstream's path: other procedures, traced routers,
encrypted payloads, progressive results, call timeouts, forwarded calls (router links),
pattern registrations, shared registrations, callees with a concurrency limit, callees that
are not in-process.

What is left out, for these procedures only: a CANCEL of such a call finds nothing to cancel
(the answer comes as it would have), and a call whose function answers later (a Deferred) is
not among the dealer's invocations of the caller while it waits; it is counted apart
(:func:`in_flight`), and the bound on a session's calls in flight counts both.

Every connecting client reads its first history page and resumes by ``deptcast.history``
after a failover: the procedure is among :data:`DIRECT` since the round trip showed in a storm
of connecting clients as it did for acknowledgements. ``deptcast.send`` and
``deptcast.send_batch`` are too: every notice a backend sends took the round trip
(``bench/send_ceiling.py``).
"""

import inspect
from typing import Any, Dict, Optional, Tuple

import txaio
from autobahn.wamp import message, types
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer
from twisted.python.failure import Failure
from crossbar.router.dealer import Dealer
from crossbar.router.session import RouterApplicationSession

from components.core import names
from components.upstream.registry import Patch, Wiring, register, replace

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: the procedures answered directly: each registered once, by one router component
#: (``deptcast.ack`` answers at once for a caller already known; ``deptcast.history`` answers
#: when the store has read, and counts among the caller's calls in flight meanwhile: see
#: :func:`in_flight`)
DIRECT: Tuple[str, ...] = (names.PROC_ACK, names.PROC_HISTORY, names.PROC_SEND, names.PROC_SEND_BATCH)

#: per caller session, its direct calls whose function has not answered yet
_waiting: Dict[Any, int] = {}


def in_flight(session: Any) -> int:
    """How many direct calls of ``session`` wait for their function's answer (the dealer's
    own count of a caller's invocations does not hold them: ``bounds.per_session`` adds both).

    :rtype: int
    """
    return _waiting.get(session, 0)


def _done(session: Any) -> None:
    left = _waiting.get(session, 0) - 1
    if left > 0:
        _waiting[session] = left
    else:
        _waiting.pop(session, None)


def _error(call: Any, uri: str, text: str) -> Any:
    return message.Error(message.Call.MESSAGE_TYPE, call.request, uri, [text])


def eligible(dealer: Any, call: Any) -> bool:
    """Whether ``call`` may take the direct path (before its authorization): one of
    :data:`DIRECT`, not traced, a plain payload, no progress, no timeout, not forwarded.

    :rtype: bool
    """
    return (call.procedure in DIRECT and not dealer._router.is_traced and call.payload is None
            and not call.receive_progress and not call.timeout and not call.forward_for)


def local_callee(registration: Any) -> Optional[Tuple[Any, Any]]:
    """``(callee session, its Autobahn registration)`` when the one callee of an exact, single
    registration is a router component of this worker without a concurrency limit; ``None``
    otherwise (upstream's path).
    """
    if registration.match != message.Register.MATCH_EXACT \
            or registration.extra.invoke != message.Register.INVOKE_SINGLE or len(registration.observers) != 1:
        return None
    callee = registration.observers[0]
    if not isinstance(getattr(callee, "_transport", None), RouterApplicationSession):
        return None
    extra = registration.observers_extra.get(callee, None)
    if extra is not None and extra.concurrency:
        return None
    own = getattr(callee, "_registrations", {}).get(registration.id)
    if own is None or own.endpoint is None:
        return None
    return callee, own


def direct(dealer: Any, session: Any, call: Any, authorization: Any, registration: Any) -> bool:
    """Answer an authorized ``call`` by calling the in-process callee's function; ``False``
    (nothing done) when the registration is not one :func:`local_callee` accepts.

    :rtype: bool
    """
    found = local_callee(registration)
    if found is None:
        return False
    callee, own = found
    endpoint = own.endpoint
    router = dealer._router
    args: tuple = (endpoint.obj,) if endpoint.obj is not None else ()
    if call.args:
        args += tuple(call.args)
    kwargs = dict(call.kwargs) if call.kwargs else {}
    if endpoint.details_arg:
        disclose = bool(authorization.get("disclose", False))
        kwargs[endpoint.details_arg] = types.CallDetails(
            own, progress=None, caller=session._session_id if disclose else None,
            caller_authid=session._authid if disclose else None,
            caller_authrole=session._authrole if disclose else None,
            procedure=call.procedure, transaction_hash=call.transaction_hash, enc_algo=None)

    def answered(result: Any) -> None:
        if session._transport is None:
            return  # the caller left
        results: Any
        if isinstance(result, types.CallResult):
            results, kwresults = result.results, result.kwresults
        else:
            results, kwresults = [result], None
        try:
            router.validate("call_result", call.procedure, results, kwresults,
                            validate=authorization.get("validate", None))
        except Exception as e:
            reply = _error(call, ApplicationError.INVALID_ARGUMENT,
                           f"call result from procedure '{call.procedure}' with invalid application payload: {e}")
        else:
            reply = message.Result(call.request, args=results, kwargs=kwresults, callee=callee._session_id,
                                   callee_authid=callee._authid, callee_authrole=callee._authrole)
        router.send(session, reply)

    def failed(failure: Any) -> None:
        # as the callee session turns an exception into its ERROR (and reports it), and the
        # dealer passes the ERROR on to the caller
        try:
            callee.onUserError(failure, txaio.failure_message(failure))
        except Exception:
            pass
        tb = txaio.failure_format_traceback(failure) if callee.traceback_app else None
        error = callee._message_from_exception(message.Invocation.MESSAGE_TYPE, 0, failure.value, tb)
        if session._transport is None:
            return
        try:
            router.validate("call_error", call.procedure, error.args, error.kwargs,
                            validate=authorization.get("validate", None))
        except Exception as e:
            reply = _error(call, ApplicationError.INVALID_ARGUMENT,
                           f"call error from procedure '{call.procedure}' with invalid application payload: {e}")
        else:
            reply = message.Error(message.Call.MESSAGE_TYPE, call.request, error.error, args=error.args,
                                  kwargs=error.kwargs)
        router.send(session, reply)

    try:
        result = endpoint.fn(*args, **kwargs)
        if inspect.iscoroutine(result):  # an ``async def`` procedure, as Autobahn runs it
            result = defer.ensureDeferred(result)
    except Exception:
        failed(txaio.create_failure())
        return True
    if txaio.is_future(result):
        if result.called:
            txaio.add_callbacks(result, answered, failed)
            return True
        _waiting[session] = _waiting.get(session, 0) + 1

        def later(outcome: Any) -> None:
            _done(session)
            if isinstance(outcome, Failure):
                failed(outcome)
            else:
                answered(outcome)
        result.addBoth(later)
    else:
        answered(result)
    return True


def _authorized(dealer: Any, session: Any, call: Any, authorization: Any, fallback: Any) -> None:
    """Upstream's ``on_authorize_success``, with the direct call where it would invoke."""
    router = dealer._router
    if not authorization["allow"]:
        router.send(session, _error(
            call, ApplicationError.NOT_AUTHORIZED,
            f'session (session_id={session._session_id}, authid="{session._authid}", '
            f'authrole="{session._authrole}") is not authorized to call procedure "{call.procedure}" '
            f'on realm "{session._realm}"'))
        return
    try:
        router.validate("call", call.procedure, call.args, call.kwargs, validate=authorization.get("validate", None))
    except Exception as e:
        router.send(session, _error(call, ApplicationError.INVALID_ARGUMENT,
                                    f"call of procedure '{call.procedure}' with invalid application payload: {e}"))
        return
    registration = dealer._registration_map.best_matching_observation(call.procedure)
    if not registration:
        router.send(session, _error(call, ApplicationError.NO_SUCH_PROCEDURE,
                                    f"no callee registered for procedure <{call.procedure}>"))
        return
    if not direct(dealer, session, call, authorization, registration):
        fallback(session, call, registration, authorization)


def _process_call(previous: Any) -> Any:
    def processCall(self, session, call):
        if not eligible(self, call):
            return previous(self, session, call)
        d = self._router.authorize(session, call.procedure, "call", options=call.marshal_options())

        def authorization_failed(err):
            self.log.failure("Authorization of 'call' for '{uri}' failed", uri=call.procedure, failure=err)
            self._router.send(session, _error(
                call, ApplicationError.AUTHORIZATION_FAILED,
                f"failed to authorize session for calling procedure '{call.procedure}': {err.value}"))

        txaio.add_callbacks(d, lambda authorization: _authorized(self, session, call, authorization, self._call),
                            authorization_failed)
    return processCall


def _direct(wiring: Wiring) -> None:
    replace("crossbar.router.dealer.Dealer.processCall", Dealer, "processCall", _process_call(Dealer.processCall))


DIRECT_CALLS = register(Patch(
    name="localcalls.direct",
    replaces=("crossbar.router.dealer.Dealer.processCall",),
    checked={
        # its steps up to the choice of callee, mirrored (authorization, validation, no callee)
        "crossbar.router.dealer.Dealer.processCall":
            "683304b2067781e0a80c90609f1074dc8b2cd8775f94933e2ecc48e3a78e2292",
        # the invocation it stands in for, the answers it mirrors
        "crossbar.router.dealer.Dealer._call":
            "048dae3f99a105d41f565815497ecfd5fbe561239614060669bf6d0835481f6a",
        "crossbar.router.dealer.Dealer.processYield":
            "b15999e44b2cc428a51b4b3d83232a80c761e5849820b6945b98b0e8df8b1a62",
        "crossbar.router.dealer.Dealer.processInvocationError":
            "bcd6e7559a490178e907e3e5bcbf5968f921e74824df9ca0a0769faee1db4fcc",
        # the in-process callee: its pass-through transport, and how Autobahn invokes and answers
        "crossbar.router.session.RouterApplicationSession.send":
            "214852b3faa1b56d28c7debb3c30cb41811579693870f9a28bb9918dd59ede19",
        "autobahn.wamp.protocol.ApplicationSession.onMessage":
            "39988f4f3331c85ea8b31405dba54188814f85bc28e0077311a29ee3a863721f",
        "autobahn.wamp.protocol.BaseSession._message_from_exception":
            "2eacb22d99ac77d852512d07960229ca798dacfd9a246426a82044c887f2b268",
        "autobahn.wamp.types.CallDetails.__init__":
            "224288bcf15aaf535efa8536434558743c42201c8788f2628a9756867c427a65",
    },
    why="every receiver calls deptcast.ack about once a second, and every connecting client deptcast.history; each "
        "call of an in-process procedure went through an INVOCATION and a YIELD between the dealer and the component "
        "in the same process: with 500 receivers acknowledging, more than half of the router worker's samples were "
        "in the dealer's call path",
    remove_when="Crossbar invokes in-process (router component) callees directly",
    apply=_direct,
))

#: the one patch of this area
PATCHES = (DIRECT_CALLS,)

__all__ = ["DIRECT", "DIRECT_CALLS", "PATCHES", "direct", "eligible", "in_flight", "local_callee"]
