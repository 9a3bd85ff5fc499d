"""What a node prints: a quiet start by default, Crossbar's internals when asked, JSON lines
for machines.

Crossbar's controller prints everything its workers log at the chosen level: at ``info``, about
250 lines of role dumps and session attach lines before the node serves. ``deptcast run`` starts
the node through this module instead of ``crossbar start``, which replaces Crossbar's stdout and
stderr observers in the controller (its function ``crossbar.node.main._start_logging``, written
against Crossbar 26.10) by one that shows

- ``quiet`` (the default): deptcast's own lines (they start with ``deptcast``) at info, and
  every warning and error of any part, Crossbar's included;
- ``all``: everything at the level asked for (``deptcast run --loglevel info|debug|...``),
  as ``crossbar start --loglevel`` would;

as text (Crossbar's format: time, process, text; info on stdout, warnings and errors on
stderr) or as JSON, one object per line on stdout: ``{"time", "level", "process", "namespace",
"text"}``. Workers keep sending every event at the global level to the controller (that is
where the filter is); nothing below a warning is lost that the mode asked for.

Run as ``python -m components.ops.nodelog [--mode quiet|all] [--format text|json]
[--loglevel LEVEL] -- start --cbdir DIR ...``.
"""

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

QUIET = "quiet"
ALL = "all"
TEXT = "text"
JSON = "json"
#: levels shown in every mode, whoever logs them
ALWAYS = ("warn", "error", "critical")


def level_name(event: Dict[str, Any]) -> str:
    """An event's level as a name (``info``, ``warn``, ...).

    :rtype: str
    """
    level = event.get("log_level")
    return getattr(level, "name", None) or str(level or "info")


def namespace_of(event: Dict[str, Any]) -> str:
    """Where an event comes from: a worker's own namespace (forwarded by Crossbar as
    ``cb_namespace``) or the controller's.

    :rtype: str
    """
    return str(event.get("cb_namespace") or event.get("log_namespace") or "")


def process_of(event: Dict[str, Any]) -> str:
    """The process an event comes from, as Crossbar names it (``Router 1234``).

    :rtype: str
    """
    system = event.get("log_system", "-")
    if not system or system == "-":
        return f"Controller {os.getpid()}"
    return " ".join(str(system).split())


def event_text(event: Dict[str, Any]) -> str:
    """An event's text, with its traceback when it carries a failure.

    :rtype: str
    """
    from twisted.logger import formatEvent  # here: Twisted is for the node's process, not every command
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            text = f"{text}\n{failure.getTraceback()}"
        except Exception:  # a failure that cannot render itself
            pass
    return text


def is_deptcast(event: Dict[str, Any], text: str) -> bool:
    """Whether deptcast logged it (its lines start with ``deptcast``; its modules are
    ``components.*``).

    :rtype: bool
    """
    return text.startswith("deptcast") or namespace_of(event).startswith("components.")


def shown(event: Dict[str, Any], text: str, mode: str) -> bool:
    """Whether ``mode`` shows the event.

    :rtype: bool
    """
    if mode == ALL or level_name(event) in ALWAYS:
        return True
    return level_name(event) == "info" and is_deptcast(event, text)


def render(event: Dict[str, Any], text: str, fmt: str) -> str:
    """One event as a line (a text event keeps its own line breaks, e.g. a traceback).

    :rtype: str
    """
    when = datetime.fromtimestamp(event.get("log_time") or 0, timezone.utc)
    if fmt == JSON:
        return json.dumps({"time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                           "level": level_name(event), "process": process_of(event),
                           "namespace": namespace_of(event), "text": text}, ensure_ascii=False)
    return f"{when.strftime('%Y-%m-%dT%H:%M:%S%z')} [{process_of(event)}] {text}"


def make_observer(mode: str, fmt: str, out=None, err=None) -> Callable[[Dict[str, Any]], None]:
    """The controller's log observer.

    :param out: where info (and, as JSON, every) line goes (default ``sys.__stdout__``)
    :param err: where warnings and errors go as text (default ``sys.__stderr__``)
    """
    # here: Twisted is for the node's process, not for every deptcast command (this module is imported by all)
    from twisted.logger import ILogObserver
    from zope.interface import provider

    @provider(ILogObserver)
    def observe(event: Dict[str, Any]) -> None:
        if event.get("log_level") is None:
            return
        text = event_text(event)
        if not shown(event, text, mode):
            return
        stream = (out or sys.__stdout__) if fmt == JSON or level_name(event) not in ALWAYS else (err or sys.__stderr__)
        print(render(event, text, fmt), file=stream, flush=True)
    return observe


def install(mode: str, fmt: str, level: str = "info") -> None:
    """Put :func:`make_observer` in place of Crossbar's stdout and stderr observers."""
    # here: Crossbar takes about 2 s to import, which only the node's process pays
    import crossbar.node.main as crossbar_main
    from twisted.logger import ILogObserver, globalLogPublisher
    from txaio import set_global_log_level, start_logging

    def start_logging_deptcast(options, reactor) -> None:
        set_global_log_level(level)
        observer = make_observer(mode, fmt)
        globalLogPublisher.addObserver(cast(ILogObserver, observer))  # make_observer's function provides it
        reactor.addSystemEventTrigger("after", "shutdown", globalLogPublisher.removeObserver, observer)
        start_logging(None, level)
    crossbar_main._start_logging = start_logging_deptcast


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m components.ops.nodelog")
    parser.add_argument("--mode", choices=(QUIET, ALL), default=QUIET)
    parser.add_argument("--format", choices=(TEXT, JSON), default=TEXT)
    parser.add_argument("--loglevel", default="info", help="Crossbar's level (the workers send events up to it)")
    parser.add_argument("crossbar_args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def crossbar_args(args: argparse.Namespace) -> List[str]:
    rest = list(args.crossbar_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return rest + ["--loglevel", args.loglevel]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    install(args.mode, args.format, args.loglevel)
    import crossbar  # here, like install()'s: about 2 s to import, for the node's process only
    sys.argv = ["crossbar", *crossbar_args(args)]  # crossbar.run() reads its command line
    return crossbar.run() or 0


if __name__ == "__main__":  # pragma: no cover - run by deptcast run
    sys.exit(main())
