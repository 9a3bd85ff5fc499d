"""Where a router worker's samples go, by stage of a connection's life: a py-spy raw profile
(``cpu_profile.record``) read stack by stack, each stack given to the first stage whose marker
it holds, looking from the innermost frame outwards (so JSON decoding inside a CALL counts as
serialization, the authorizer inside a SUBSCRIBE as authorization).

    .venv/bin/python bench/stages.py profile.raw [more.raw ...]

``compare.py --profile`` prints these shares for the storm and for each rate step.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

#: (stage, markers): a frame ``name (path:line)`` marks a stage when it holds one of the markers;
#: the innermost marked frame of a stack decides. Order breaks ties within one frame.
STAGES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("serialization", ("wamp/serializer.py", "/json/", "ujson", "orjson", "components/upstream/wampjson.py",
                       "Message.parse", "parse (autobahn/wamp/message.py", "marshal (autobahn/wamp/message.py",
                       "serialize (autobahn/wamp/message.py", "cast_", "check_or_raise_")),
    ("authenticator", ("components/wamp/auth.py", "crossbar/router/auth/", "pendingauth", "PendingAuth")),
    ("authorization", ("authorize (", "components/core/policy.py")),
    ("history call", ("components/wamp/api.py", "components/service/messaging.py", "components/store/",
                      "components/core/history.py")),
    ("ack call", ("components/wamp/receipts.py", "components/service/receipts.py", "components/core/receipts.py")),
    ("meta events", ("wamp.session.on_", "_session_joined", "onJoin (crossbar/router/session.py",
                     "onLeave (crossbar/router/session.py", "_on_join", "components/upstream/sessions.py")),
    ("subscribe", ("processSubscribe", "processUnsubscribe", "crossbar/router/observation.py")),
    ("call (dealer)", ("processCall", "processYield", "processInvocationError", "_add_invoke_request",
                       "crossbar/router/dealer.py", "RouterApplicationSession.send",
                       "components/upstream/localcalls.py")),
    ("publish (broker)", ("processPublish", "crossbar/router/broker.py")),
    ("hello/welcome", ("onHello", "onAuthenticate", "welcome (", "processHello", "RouterSession.onOpen",
                       "onJoin (", "Router.attach", "_session_joined")),
    ("websocket upgrade", ("processHandshake", "onConnect (", "parseHttpHeader", "crossbar/webservice",
                           "twisted/web/", "processProxyConnect")),
    ("close/teardown", ("onClose", "connectionLost", "detach", "_connectionLost", "dropConnection")),
    ("writes", ("doWrite", "writeSomeData", "write (twisted/internet", "sendData", "components/upstream/hotpath.py")),
    ("websocket framing", ("autobahn/websocket/",)),
    ("accept", ("Port.doRead", "doRead (twisted/internet/tcp.py:1", "buildProtocol", "makeConnection")),
    ("logging", ("twisted/logger", "/logging/", "Logger.emit", "Logger._log", "_no_op (")),
    ("deferreds (txaio, Twisted)", ("txaio/", "twisted/internet/defer.py")),
    ("reactor and other", ("",)),
)


def stage_of(frames: List[str]) -> str:
    """The stage of one stack (frames outermost first, as py-spy writes them)."""
    for frame in reversed(frames):
        for stage, markers in STAGES[:-1]:
            if any(m in frame for m in markers):
                return stage
    return STAGES[-1][0]


def shares(raws: Iterable[Path]) -> Dict[str, float]:
    """The share of the samples of ``raws`` per stage, largest first (idle samples, those in
    the reactor's poll, left out)."""
    counts: Counter = Counter()
    for raw in raws:
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [f for f in stack.split(";") if f]
            if frames and ("poll (" in frames[-1] or "doPoll" in frames[-1] or "_doReadOrWrite" == frames[-1]):
                continue
            counts[stage_of(frames)] += int(count)
    total = sum(counts.values())
    return {stage: round(n / total, 4) for stage, n in counts.most_common()} if total else {}


def lines(stage_shares: Dict[str, float]) -> List[str]:
    """The shares as indented text lines."""
    return ["      by stage (innermost marked frame):"] + [
        f"        {100 * s:5.1f}%  {stage}" for stage, s in stage_shares.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=Path, nargs="+")
    args = parser.parse_args(argv)
    print("\n".join(lines(shares(args.raw))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
