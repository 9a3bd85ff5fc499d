"""Refusal counting and summaries (:mod:`components.core.logsummary`), with the time passed in."""

from components.core.logsummary import RefusalCounter, Summary, host_of, printable, short_reason

RATE = "deptcast.error.rate_limited"
FRAME = "deptcast.error.invalid_frame"


def test_the_first_refusal_of_a_spell_gets_its_own_line_and_opens_a_window():
    c = RefusalCounter(interval=10)
    assert c.due is None
    assert c.add(RATE, "cardio_mallory", now=100.0) is True
    assert c.due == 110.0


def test_a_flood_is_one_line_per_reason_then_one_summary_per_window():
    c = RefusalCounter(interval=10)
    shown = [c.add(RATE, "cardio_mallory", now=100.0 + i * 0.005) for i in range(1700)]
    shown += [c.add(FRAME, "cardio_eve", now=105.0 + i * 0.1) for i in range(12)]
    assert shown.count(True) == 2  # the first rate_limited and the first invalid_frame
    summary = c.flush(now=110.0)
    assert summary == Summary(total=1712, seconds=10.0, reasons=(("rate_limited", 1700), ("invalid_frame", 12)),
                              top=(("cardio_mallory", 1700), ("cardio_eve", 12)))
    assert summary.line("send", "sends") == ("refused 1,712 sends in the last 10 s: 1,700 rate_limited, "
                                             "12 invalid_frame; most by cardio_mallory (1,700), cardio_eve (12)")
    # the flood goes on: the next window counts from zero, and reasons seen in the spell get no line again
    assert c.due == 120.0
    assert c.add(RATE, "cardio_mallory", now=111.0) is False
    assert c.flush(now=120.0).line("send", "sends") == ("refused 1 send in the last 10 s: 1 rate_limited; "
                                                        "most by cardio_mallory (1)")


def test_a_single_refusal_is_one_line_and_no_summary():
    c = RefusalCounter(interval=10)
    assert c.add(RATE, "cardio_bob", now=0.0)
    assert c.flush(now=10.0) is None  # nothing the log has not shown
    assert c.due == 20.0  # one more quiet window ends the spell
    assert c.flush(now=20.0) is None
    assert c.due is None


def test_a_quiet_window_ends_the_spell_and_the_next_refusal_gets_a_line_again():
    c = RefusalCounter(interval=10)
    c.add(RATE, "a_b", now=0.0)
    c.add(RATE, "a_b", now=1.0)
    assert c.flush(now=10.0).total == 2
    assert c.flush(now=20.0) is None
    assert c.due is None
    assert c.add(RATE, "a_b", now=35.0) is True
    assert c.due == 45.0


def test_a_late_timer_reports_the_windows_real_length():
    c = RefusalCounter(interval=10)
    c.add(RATE, None, now=0.0)
    c.add(RATE, None, now=0.5)
    summary = c.flush(now=12.4)
    assert summary.seconds == 12.4 and summary.top == ()
    assert summary.line("session", "sessions") == "refused 2 sessions in the last 12 s: 2 rate_limited"


def test_callers_beyond_the_bound_are_counted_as_others_and_never_named():
    c = RefusalCounter(interval=10, top=2, max_who=3)
    for i in range(10):
        c.add(RATE, f"host{i}", now=float(i) / 10)
    c.add(RATE, "host0", now=1.0)
    summary = c.flush(now=10.0)
    assert summary.total == 11
    assert summary.top == (("host0", 2), ("host1", 1))  # "others" (7) is never named
    assert "others" not in summary.line("send", "sends")


def test_flush_while_quiet_does_nothing():
    assert RefusalCounter().flush(now=5.0) is None


def test_reasons_and_names_are_made_short_and_printable():
    assert short_reason("deptcast.error.token_expired") == "token_expired"
    assert short_reason("internal_error:KeyError") == "internal_error:KeyError"
    assert printable("bob\nFAKE LINE") == "bob?FAKE LINE"
    assert printable("x" * 100, limit=10) == "x" * 10 + "..."
    assert printable("caf\u00e9") == "caf?"


def test_hosts_of_transport_peers():
    assert host_of("tcp4:127.0.0.1:51234") == "127.0.0.1"
    assert host_of("tcp6:::1:51234") == "::1"
    assert host_of("unix") == "unix"
    assert host_of(None) == "?"
