"""Unit tests of the generated hardening settings: the node config's WebSocket caps, and the
warning for a message limit larger than the config was made for."""

from components.core.frames import frame_cap, wamp_message_cap
from components.ops.nodeconfig import node_config


def test_wamp_cap_fits_the_largest_message_in_any_serializer():
    assert wamp_message_cap(65536) == 6 * 65536 + 64 * 1024
    assert wamp_message_cap(65536) > frame_cap(65536)
    ws = node_config()["workers"][0]["transports"][0]["paths"]["ws"]["options"]
    assert ws["max_message_size"] == ws["max_frame_size"] == wamp_message_cap(65536)


def test_a_larger_message_limit_sizes_the_caps_and_sets_the_setting():
    config = node_config(max_message_bytes=1_000_000)
    router = config["workers"][0]
    assert router["transports"][0]["paths"]["ws"]["options"]["max_message_size"] == wamp_message_cap(1_000_000)
    assert router["options"]["env"]["vars"]["DEPTCAST_MAX_MESSAGE_BYTES"] == "1000000"
    assert "env" not in node_config()["workers"][0]["options"]


def _legacy_warnings(monkeypatch, max_message_bytes, extra):
    from twisted.internet import task

    from components.edge.legacy import LegacyResource
    from components.service.runtime import Runtime
    from tests.support.fakes import RecordingLog, make_settings

    log = RecordingLog()
    monkeypatch.setattr(LegacyResource, "log", log)
    rt = Runtime(clock=task.Clock())
    rt._settings = make_settings(max_message_bytes=max_message_bytes)
    LegacyResource(extra, rt)
    return [r for r in log.records if r.level == "warn"]


def test_a_message_limit_larger_than_the_config_was_made_for_is_warned_about(monkeypatch):
    warned = _legacy_warnings(monkeypatch, 1_000_000, {"max_message_bytes": 65536})
    assert len(warned) == 1 and "--max-message-bytes" in warned[0].format
    assert _legacy_warnings(monkeypatch, 65536, {"max_message_bytes": 65536}) == []
