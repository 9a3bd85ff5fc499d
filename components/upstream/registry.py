"""The registry of deptcast's patches of Autobahn, Crossbar and Twisted, and the one way they
are installed.

A :class:`Patch` records what it replaces (dotted upstream names), the upstream source it was
checked against (:attr:`Patch.checked`: the sha256 of the source of every upstream function or
class it replaces, mirrors or relies on), why it is needed, and what would let it go. The area
modules of :mod:`components.upstream` each :func:`register` theirs when imported.

:func:`install` is called once, by the node's composition root
(:class:`components.wamp.root.RootComponent`), before the web transport listens. For each patch
it compares the digests with the installed upstream source: a patch whose upstream changed is
not applied, and the node logs one warning naming the patch and what changed. A patch applies
its replacements through :func:`replace`, which keeps what was there, so that the digests of a
replaced function can still be checked and tests can put everything back
(:func:`uninstall`).
"""

import hashlib
import importlib
import inspect
import linecache
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import txaio

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

log = txaio.make_logger()

#: a patch's :attr:`Patch.state` once applied, and when it is not
APPLIED = "applied"
SKIPPED = "skipped"


@dataclass
class Wiring:
    """What the node hands the patches that need a collaborator (passed in, never imported:
    the seam depends on nothing of deptcast's but :mod:`components.core`).

    :ivar router: the realm's :class:`crossbar.router.router.Router`
    :ivar authorize: the client roles' authorizer, ``(session details, uri, action, options)
        -> answer`` (the procedure ``deptcast.internal.authorize``'s function)
    :ivar links: where this node's link states go (a
        :class:`~components.service.links.LinkState`)
    :ivar peers: the other nodes' names
    :ivar max_body: the largest request body any resource of the web transport reads
    :ivar auth_timeout: seconds a WAMP connection has to authenticate (0: no bound)
    :ivar max_authenticating: WAMP connections that may be between their upgrade and their
        WELCOME at once; the next are answered 503 (0: no bound)
    :ivar send_buffer: bytes a WAMP connection may fall behind by before it is closed (0: no bound)
    :ivar calls_in_flight: calls a client session may have unanswered (0: no bound)
    :ivar max_subscriptions: subscriptions a client session may hold (0: no bound)
    :ivar connection_refusals: where connections closed by a bound, and clients' protocol
        errors, are counted and summarised (a
        :class:`~components.service.refusals.RefusalLog`)
    """

    router: Any = None
    authorize: Optional[Callable[..., Any]] = None
    links: Any = None
    peers: Sequence[str] = ()
    max_body: int = 64 * 1024
    auth_timeout: float = 0.0
    max_authenticating: int = 0
    send_buffer: int = 0
    calls_in_flight: int = 0
    max_subscriptions: int = 0
    connection_refusals: Any = None


@dataclass(frozen=True)
class Patch:
    """One replacement of upstream behaviour.

    :ivar name: ``<area>.<what>``, the area being the module of :mod:`components.upstream`
    :ivar replaces: the dotted upstream names it replaces (or whose work it takes over; for a
        read of upstream internals, what it reads)
    :ivar checked: dotted upstream name to the sha256 of its source, for everything replaced,
        mirrored or relied on, as checked
    :ivar why: why deptcast needs it (with figures where it is about cost)
    :ivar remove_when: what would let it go
    :ivar apply: makes the replacement, given the node's :class:`Wiring`
    :ivar upstream_issue: the upstream issue about it, where there is one
    :ivar shape: an extra check beyond the digests (what the digests cannot see, such as a
        module attribute): answers why the patch cannot apply, or ``None``
    :ivar undo: puts back what :func:`replace` does not know of (tests)
    :ivar requires: patches that must be applied for this one to work
    """

    name: str
    replaces: Tuple[str, ...]
    checked: Mapping[str, str]
    why: str
    remove_when: str
    apply: Callable[[Wiring], None]
    upstream_issue: str = ""
    shape: Optional[Callable[[Wiring], Optional[str]]] = None
    undo: Optional[Callable[[], None]] = None
    requires: Tuple[str, ...] = ()

    @property
    def area(self) -> str:
        return self.name.partition(".")[0]


@dataclass(frozen=True)
class Status:
    """Whether a patch is in place in this process, and if not, why."""

    name: str
    state: str
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.state == APPLIED

    def as_json(self) -> Dict[str, str]:
        """What ``/health`` lists: ``{"name", "state"}``, and ``"reason"`` when skipped.

        :rtype: dict
        """
        return {"name": self.name, "state": self.state, **({"reason": self.reason} if self.reason else {})}


#: every registered patch, by name, in the order the area modules registered them
PATCHES: Dict[str, Patch] = {}
#: what :func:`install` answered last, by name
_statuses: Dict[str, Status] = {}
#: dotted name (or key) -> (owner, attribute, whether the owner held its own value, that value,
#: the patch that replaced it)
_saved: Dict[str, Tuple[Any, str, bool, Any, str]] = {}
_applying: List[str] = []


def register(patch: Patch) -> Patch:
    """Add ``patch`` to the registry (an area module does this once, at import).

    :raises ValueError: for a second patch of the same name
    :rtype: Patch
    """
    if patch.name in PATCHES and PATCHES[patch.name] is not patch:
        raise ValueError(f"two patches named {patch.name}")
    PATCHES[patch.name] = patch
    return patch


# -- upstream source -----------------------------------------------------------------------

def resolve(name: str) -> Any:
    """The upstream object a dotted name names: a module's attribute, or what a class defines
    itself (its own ``__dict__``, not what it inherits); the upstream one where a patch
    replaced it.

    :raises LookupError: if nothing of that name exists
    """
    if name in _saved:
        return _saved[name][3]
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for part in parts[split:-1]:
                owner = getattr(owner, part)
            if isinstance(owner, type):
                return owner.__dict__[parts[-1]]
            return getattr(owner, parts[-1])
        except (AttributeError, KeyError):
            raise LookupError(name) from None
    raise LookupError(name)


def source_text(obj: Any) -> str:
    """The source text of a function (a method, a property's getter): its lines from the first
    (its first decorator's) to the last that holds code, read from its file through the
    code object's positions (``inspect.getsource`` tokenizes the whole block: a node checks
    some 80 sources at start, ten times faster this way); a class's as ``inspect`` finds it.

    :raises TypeError: for something without Python source (a builtin)
    :rtype: str
    """
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    elif isinstance(obj, property):
        obj = obj.fget
    code = getattr(inspect.unwrap(obj), "__code__", None) if not isinstance(obj, type) else None
    if code is None:
        return inspect.getsource(obj)
    lines = linecache.getlines(code.co_filename)
    if not lines:
        raise OSError(f"no source for {code.co_filename}")
    return "".join(lines[code.co_firstlineno - 1:_last_line(code)])


def _last_line(code: Any) -> int:
    last = code.co_firstlineno
    for _, end, _, _ in code.co_positions():
        if end is not None and end > last:
            last = end
    for const in code.co_consts:
        if inspect.iscode(const):
            last = max(last, _last_line(const))
    return last


def source_digest(obj: Any) -> str:
    """The sha256 of a function's or class's source text (:func:`source_text`).

    :raises TypeError: for something without Python source (a builtin)
    :rtype: str
    """
    return hashlib.sha256(source_text(obj).encode("utf-8")).hexdigest()


def digest_of(name: str) -> Optional[str]:
    """The digest of the installed upstream source of ``name``; ``None`` if it is missing or
    has no source.

    :rtype: str or None
    """
    try:
        return source_digest(resolve(name))
    except (LookupError, TypeError, OSError):
        return None


def changed_upstream(patch: Patch) -> List[str]:
    """The names of :attr:`Patch.checked` whose installed source is not the one checked.

    :rtype: list
    """
    return [name for name, digest in patch.checked.items() if digest_of(name) != digest]


def users_of(module_name: str, names: Union[str, Iterable[str]], within: Optional[Iterable[str]] = None) -> List[str]:
    """The functions of a module, and the methods of its classes (only of the classes named in
    ``within``, when given), that read one of ``names`` (a module global, or an attribute), as
    ``module.function`` / ``module.Class.method``: a shape check for a patch that replaces a
    module global or drops attributes (a new reader after an upgrade is one it was not checked
    for).

    :rtype: list
    """
    wanted = {names} if isinstance(names, str) else set(names)
    classes = set(within) if within is not None else None
    module = importlib.import_module(module_name)
    found = []

    def reads(code: Any) -> bool:
        return bool(wanted & set(code.co_names)) or any(
            reads(const) for const in code.co_consts if inspect.iscode(const))

    def visit(owner: Any, prefix: str) -> None:
        for attr, value in vars(owner).items():
            if isinstance(value, (staticmethod, classmethod, property)):
                value = getattr(value, "__func__", None) or getattr(value, "fget", None)
            # a module's own functions (not those it imports), and whatever a class holds
            if inspect.isfunction(value) and (owner is not module or value.__module__ == module_name) \
                    and reads(value.__code__):
                if owner is not module or classes is None:
                    found.append(f"{prefix}.{attr}")
            elif (inspect.isclass(value) and value.__module__ == module_name and owner is module
                  and (classes is None or attr in classes)):
                visit(value, f"{prefix}.{attr}")
    visit(module, module_name)
    return sorted(found)


# -- replacing -----------------------------------------------------------------------------

def replace(name: str, owner: Any, attribute: str, value: Any) -> Any:
    """Put ``value`` at ``owner.attribute`` for the patch being applied, keeping what was
    there under ``name`` (the dotted upstream name, so :func:`resolve` still finds the
    upstream one); answers what was there. Replacing a name again keeps the first original.
    """
    had_own = attribute in vars(owner) if hasattr(owner, "__dict__") else True
    previous = vars(owner).get(attribute) if had_own else getattr(owner, attribute, None)
    if name not in _saved:
        _saved[name] = (owner, attribute, had_own, previous, _applying[-1] if _applying else "")
    setattr(owner, attribute, value)
    return previous


def original(name: str) -> Any:
    """What :func:`replace` found at ``name`` (the upstream object).

    :raises KeyError: if nothing was replaced under that name
    """
    return _saved[name][3]


def _restore(patch_name: str) -> None:
    for key, (owner, attribute, had_own, previous, by) in list(_saved.items()):
        if by != patch_name:
            continue
        if had_own:
            setattr(owner, attribute, previous)
        else:
            try:
                delattr(owner, attribute)
            except AttributeError:
                pass
        del _saved[key]


# -- installing ----------------------------------------------------------------------------

def install(wiring: Wiring, only: Optional[Iterable[str]] = None, leave_out: Iterable[str] = ()) -> List[Status]:
    """Apply every registered patch whose upstream source is the one checked (idempotent: a
    patch in place stays). One warning per patch that is not applied, saying why.

    Called by the node's composition root, and by tests (``only``: just these patches).

    :param leave_out: names the node config asks to leave out (to measure what a patch earns)
    :returns: the state of each patch considered, in registration order
    :rtype: list
    """
    wanted = set(only) if only is not None else None
    unknown = sorted(set(leave_out) - set(PATCHES))
    if unknown:
        log.warn("deptcast upstream: no patch is named {names} (the node config's leave_out); see "
                 "'python -m components.upstream'", names=", ".join(unknown))
    answered = []
    for patch in PATCHES.values():
        if wanted is not None and patch.name not in wanted:
            continue
        status = _install_one(patch, wiring, set(leave_out))
        _statuses[patch.name] = status
        answered.append(status)
    return answered


def _install_one(patch: Patch, wiring: Wiring, leave_out: set) -> Status:
    current = _statuses.get(patch.name)
    if current is not None and current.applied:
        return current
    if patch.name in leave_out:
        log.warn("deptcast upstream: {name} is left out (the node config's leave_out)", name=patch.name)
        return Status(patch.name, SKIPPED, "left out by the node config")
    missing = [r for r in patch.requires if not (r in _statuses and _statuses[r].applied)]
    if missing:
        reason = f"needs {', '.join(missing)}, which is not applied"
        log.warn("deptcast upstream: {name} is not applied: it {reason}", name=patch.name, reason=reason)
        return Status(patch.name, SKIPPED, reason)
    changed = changed_upstream(patch)
    if changed:
        reason = "upstream changed: " + ", ".join(changed)
        log.warn("deptcast upstream: {name} is not applied: the source of {changed} is not the one it was checked "
                 "against, so upstream's own code runs there; recheck components/upstream/{area}.py "
                 "(docs/project/upstream.md)",
                 name=patch.name, changed=", ".join(changed), area=patch.area)
        return Status(patch.name, SKIPPED, reason)
    misfit = patch.shape(wiring) if patch.shape is not None else None
    if misfit:
        log.warn("deptcast upstream: {name} is not applied: {reason}", name=patch.name, reason=misfit)
        return Status(patch.name, SKIPPED, misfit)
    _applying.append(patch.name)
    try:
        patch.apply(wiring)
    except Exception as e:
        _restore(patch.name)
        log.failure("deptcast upstream: {name} failed to apply; upstream behaviour stays", name=patch.name)
        return Status(patch.name, SKIPPED, f"failed: {type(e).__name__}")
    finally:
        _applying.pop()
    return Status(patch.name, APPLIED)


def uninstall(names: Optional[Iterable[str]] = None) -> None:
    """Put the upstream behaviour back (tests: a node installs its patches for good)."""
    wanted = set(names) if names is not None else set(PATCHES)
    for patch in reversed(list(PATCHES.values())):
        if patch.name not in wanted:
            continue
        status = _statuses.pop(patch.name, None)
        if status is not None and status.applied and patch.undo is not None:
            patch.undo()
        _restore(patch.name)


def statuses() -> List[Status]:
    """The state of every patch :func:`install` considered in this process.

    :rtype: list
    """
    return [_statuses[name] for name in PATCHES if name in _statuses]


def is_applied(name: str) -> bool:
    """:rtype: bool"""
    status = _statuses.get(name)
    return status is not None and status.applied


def summary(answered: Sequence[Status]) -> Tuple[int, int, List[str]]:
    """``(applied, considered, names not applied)`` of an :func:`install` answer.

    :rtype: tuple
    """
    skipped = [s.name for s in answered if not s.applied]
    return len(answered) - len(skipped), len(answered), skipped


__all__ = ["APPLIED", "PATCHES", "SKIPPED", "Patch", "Status", "Wiring", "changed_upstream", "digest_of",
           "install", "is_applied", "original", "register", "replace", "resolve", "source_digest", "statuses",
           "summary", "uninstall", "users_of"]
