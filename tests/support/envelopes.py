"""Envelopes as a node sends them, for the unit tests of the client's rules: cardio_alice's
three topics, and ids that grow in send order unless a test gives one."""

from itertools import count
from typing import Any, Dict, Iterable, List, Optional

DEPT, ALL, DM = "deptcast.dept.cardio", "deptcast.all", "deptcast.user.cardio_alice"
TOPICS = (DEPT, ALL, DM)
_ids = count(1)


def env(topic: str, seq: Optional[int], msg_id: Optional[int] = None, **extra: Any) -> Dict[str, Any]:
    """An envelope of ``topic`` (``seq`` ``None``: one stored before seq existed)."""
    scope, target = {DEPT: ("dept", "cardio"), ALL: ("all", "All"), DM: ("user", "cardio_alice")}.get(
        topic, ("dept", topic.rsplit(".", 1)[-1]))
    out = {"id": f"{msg_id if msg_id is not None else next(_ids):016d}", "scope": scope, "target": target,
           "sender": "pat", "sender_dept": "admin", "message": f"{topic} #{seq}", "ts": 1, **extra}
    if seq is not None:
        out["seq"] = seq
    return out


def seqs(envelopes: Iterable[Dict[str, Any]]) -> List[Optional[int]]:
    return [(e["seq"] if "seq" in e else None) for e in envelopes]
