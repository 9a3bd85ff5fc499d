"""Token life on the client (``components.client.refresh`` through the real ``Connector``, on a
fake component, fake sessions and a fake clock that is also the wall clock): a provider's newer
token is handed to the open session ahead of ``exp`` (no reconnect, nothing missed); the node's
answer plans the next renewal; a node that wants a new session for it, or does not offer the
procedure, gets one at once; a fixed token ends at ``exp``; a revocation stops the client."""

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer

from components.client import contract, errors
from components.core import names
from components.core.errors import INVALID_TOKEN, NOT_AUTHORIZED, UNAVAILABLE
from components.core.tokens import issue_token
from tests.support.client import EPOCH, Connected

SECRET = "k" * 40


class Provider:
    """Mints a token of ``ttl`` seconds at each call, on the harness's clock."""

    def __init__(self, ttl=60, role="member", user="alice"):
        self.ttl, self.role, self.user = ttl, role, user
        self.h = None
        self.asked = 0

    def __call__(self):
        self.asked += 1
        return issue_token(SECRET, self.user, "cardio", self.role, self.ttl, now=self.h.clock.seconds())


def _connected(provider, **kwargs) -> Connected:
    h = Connected(provider, **kwargs)
    if isinstance(provider, Provider):
        provider.h = h
    return h


def _refreshes(session):
    return [a[0] for a, _ in session.calls_of(contract.PROC_SESSION_REFRESH)]


def test_twenty_renewals_of_a_three_second_token_keep_one_session_and_lose_nothing():
    p = Provider(ttl=3)
    h = _connected(p)
    s = h.connect()
    for i in range(20):
        h.send("cardio", f"m{i}", via=[s])
        h.clock.advance(1.5)   # renewed at half of its life (three seconds are short): before exp
    assert len(_refreshes(s)) == 20 and h.engine.stats.refreshes == 20
    assert h.messages() == [f"m{i}" for i in range(20)]
    assert h.engine.stats.joins == 1 and s.left == [] and h.component.starts == 1
    assert _refreshes(s)[-1] == h.connector.tokens.in_use


def test_a_renewal_goes_at_80_percent_of_the_life_and_the_answer_plans_the_next():
    p = Provider(ttl=1000)
    h = _connected(p)
    s = h.connect()
    h.clock.advance(1000 * 0.7)   # at most a tenth earlier than 80 %
    assert _refreshes(s) == []
    h.clock.advance(1000 * 0.1 + 0.01)
    assert len(_refreshes(s)) == 1
    # the node answers when the session now ends; it shortens it to 100 s from now
    s.answers[contract.PROC_SESSION_REFRESH] = lambda token: {"exp": h.clock.seconds() + 100}
    h.clock.advance(799)
    assert len(_refreshes(s)) == 2
    assert h.connector.tokens.session_exp == h.clock.seconds() + 100
    h.clock.advance(50.01)      # half of those 100 s
    assert len(_refreshes(s)) == 3


def test_the_session_end_the_node_tells_at_welcome_is_the_one_planned_for():
    p = Provider(ttl=3600)
    h = _connected(p)
    s = h.connect(exp=EPOCH + 100)   # the node ends this session sooner than the token
    h.clock.advance(50.01)
    assert len(_refreshes(s)) == 1


def test_a_provider_that_answers_later_is_waited_for():
    p = Provider(ttl=10)
    pending = []

    def later():
        d = defer.Deferred()
        pending.append(d)
        return d
    h = _connected(later)
    p.h = h
    h.component.authentication["ticket"]._provider = p   # the first sign-in: a token at once
    s = h.connect()
    h.connector.tokens._provider = later
    h.clock.advance(5)
    assert pending and _refreshes(s) == []
    pending[0].callback(p())
    assert len(_refreshes(s)) == 1


def _reconnected(h, s):
    """The client left ``s`` to sign in again: the component ends and starts again at once,
    with the back-off of earlier attempts forgotten (Autobahn would wait it out)."""
    assert s.left == ["wamp.close.normal"]
    h.end(s, "wamp.close.goodbye_and_out")
    assert [t.connect_attempts for t in h.component._transports] == [3, 3]
    h.component.done.callback(None)
    h.clock.advance(0)
    assert [t.connect_attempts for t in h.component._transports] == [0, 0]
    return h.component.starts


def test_another_identity_or_role_on_the_node_means_a_new_session_with_the_new_token():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    h.send("cardio", "before", via=[s])
    s.refuse[contract.PROC_SESSION_REFRESH] = [ApplicationError(NOT_AUTHORIZED, "another role")]
    h.clock.advance(30)
    assert _reconnected(h, s) == 2
    h.send("cardio", "while away")
    s2 = h.connect("n2")
    assert h.signed_in[-1] != h.signed_in[0] and p.asked == 3   # sign-in, renewal, sign-in again
    assert h.messages() == ["before", "while away"]             # resumed by position
    assert h.engine.stats.refresh_reconnects == 1 and h.engine.fatal is None
    assert s2.calls_of(names.PROC_HISTORY)


def test_a_node_without_the_procedure_gets_a_new_session_before_exp():
    for uri in (contract.NO_SUCH_PROCEDURE, contract.ROUTER_NOT_AUTHORIZED):
        p = Provider(ttl=60)
        h = _connected(p)
        s = h.connect()
        if uri == contract.NO_SUCH_PROCEDURE:
            s.missing.add(contract.PROC_SESSION_REFRESH)
        else:
            s.refuse[contract.PROC_SESSION_REFRESH] = [ApplicationError(uri, "not allowed")]
        h.clock.advance(30)
        assert h.clock.seconds() < EPOCH + 60
        assert _reconnected(h, s) == 2, uri


def test_a_token_with_another_role_is_signed_in_with_on_a_new_session():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    p.role = "publisher"
    h.clock.advance(30)
    assert _refreshes(s) == [] and _reconnected(h, s) == 2


def test_a_token_of_another_user_is_not_a_renewal():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    p.user = "bob"
    h.clock.advance(30)
    assert _refreshes(s) == [] and s.left == [] and p.asked >= 2   # asked again, while the token lasts


def test_unavailable_is_handed_over_again_while_the_token_lasts():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    s.refuse[contract.PROC_SESSION_REFRESH] = [ApplicationError(UNAVAILABLE, "busy")]
    h.clock.advance(30)
    [first] = _refreshes(s)
    h.clock.advance(60 * 0.5 / 4 + 0.01)   # a quarter of what was left
    assert _refreshes(s) == [first, first] and h.engine.stats.refreshes == 1


def test_a_refused_token_leaves_the_session_its_own_and_the_provider_is_asked_again():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    held = h.connector.tokens.in_use
    s.refuse[contract.PROC_SESSION_REFRESH] = [ApplicationError(INVALID_TOKEN, "bad signature")]
    h.clock.advance(30)
    assert h.connector.tokens.in_use == held and s.left == []
    h.clock.advance(7.6)
    assert len(_refreshes(s)) == 2 and h.connector.tokens.in_use != held


def test_nothing_newer_is_asked_again_until_too_late_then_the_node_ends_the_session():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    asked = []
    h.connector.tokens._provider = lambda: asked.append(1) or h.signed_in[0]   # the same token: nothing newer
    h.clock.pump([0.01] * 6000)
    # from half of its life on, after a quarter of what is left each time, until less than 0.25 s is left
    assert _refreshes(s) == [] and s.left == [] and 15 <= len(asked) <= 18
    h.end(s, contract.CLOSE_TOKEN_EXPIRED, "the token expired")
    assert h.engine.fatal is None   # a provider: the next sign-in asks it, at once
    assert [t.connect_attempts for t in h.component._transports] == [0, 0]


def test_a_provider_that_fails_is_asked_again():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the token file is being rewritten")
        return issue_token(SECRET, "alice", "cardio", "member", 60, now=h.clock.seconds())
    h = _connected(flaky)
    s = h.connect()
    h.clock.advance(30)
    assert _refreshes(s) == []
    h.clock.advance(7.6)
    assert len(_refreshes(s)) == 1


def test_a_lost_session_is_not_renewed_and_the_next_one_plans_afresh():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    h.end(s, "wamp.close.transport_lost")
    h.clock.advance(100)
    assert _refreshes(s) == [] and p.asked == 1
    s2 = h.connect("n2")
    h.clock.advance(30)
    assert len(_refreshes(s2)) == 1


# -- a fixed token, and revocation


def test_a_fixed_token_is_never_renewed_and_its_session_ends_at_exp_for_good():
    token = issue_token(SECRET, "alice", "cardio", "member", 60, now=EPOCH)
    h = _connected(token)
    s = h.connect()
    stopped = []
    h.engine.on_fatal(stopped.append)
    h.clock.advance(59)
    assert _refreshes(s) == []
    assert h.component.is_fatal(ApplicationError(contract.CLOSE_TOKEN_EXPIRED, "expired")) is True
    assert all(t.gave_up for t in h.component._transports)   # Autobahn tries no other node either
    h.end(s, contract.CLOSE_TOKEN_EXPIRED, "the token expired")
    [error] = stopped
    assert isinstance(error, errors.TokenExpired) and error.uri == contract.CLOSE_TOKEN_EXPIRED
    h.component.done.errback(RuntimeError("Component failed: Exhausted all transport connect attempts"))
    h.clock.advance(100)
    assert h.component.starts == 1 and h.connector._done.called   # no loop


def test_a_revoked_user_is_told_and_never_signed_in_again():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    waiting = defer.ensureDeferred(h.engine.send("cardio", "x", timeout=100))
    s.hold[names.PROC_SEND] = []
    assert h.component.is_fatal(ApplicationError(contract.CLOSE_REVOKED, "revoked")) is True
    h.end(s, contract.CLOSE_REVOKED, "an administrator revoked this user")
    assert isinstance(h.engine.fatal, errors.Revoked) and h.engine.fatal.reason == "an administrator revoked this user"
    h.component.done.errback(RuntimeError("Component failed: Exhausted all transport connect attempts"))
    h.clock.advance(100)
    assert h.component.starts == 1 and p.asked == 1
    late = defer.ensureDeferred(h.engine.send("cardio", "after"))
    assert isinstance(late.result.value, errors.Revoked)
    late.addErrback(lambda f: None)
    waiting.addErrback(lambda f: None)


def test_a_token_refused_as_revoked_at_sign_in_stops_even_a_provider():
    p = Provider(ttl=60)
    h = _connected(p)
    s = h.connect()
    h.end(s, "wamp.close.transport_lost")
    h.refuse(INVALID_TOKEN, "the token was revoked")
    assert isinstance(h.engine.fatal, errors.Revoked) and h.engine.fatal.uri == INVALID_TOKEN
    assert h.component.is_fatal(ApplicationError(INVALID_TOKEN, "the token was revoked")) is True


def test_revoked_is_exported_with_the_other_errors():
    import components.client as client
    assert client.Revoked is errors.Revoked and client.TokenExpired is errors.TokenExpired
