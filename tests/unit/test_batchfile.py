"""The file of ``deptcast send --batch`` (``components.ops.batchfile``): every line checked before
anything is sent, bounded before it is parsed."""

import io

from components.ops.batchfile import MAX_LINE_BYTES, read_batch


def _read(text: bytes):
    return read_batch(io.BytesIO(text))


def test_good_lines_with_their_numbers_and_keys_kept():
    items, problems = _read(b'{"to": "cardio", "message": "a"}\n\n# a comment\n'
                            b'{"to": "All", "message": "b", "key": "shift-1"}\n'
                            b'{"message": "c", "to": "onco_bob"}')
    assert problems == []
    assert items == [(1, {"to": "cardio", "message": "a"}), (4, {"to": "All", "message": "b", "key": "shift-1"}),
                     (5, {"to": "onco_bob", "message": "c"})]


def test_every_bad_line_is_named():
    items, problems = _read(b'[1]\n{"to": "cardio"}\n{"to": "", "message": "m"}\n{"to": "x", "message": ""}\n'
                            b'{"to": "x", "message": 5}\n{"to": "x", "message": "m", "key": ""}\n'
                            b'{"to": "x", "message": "m", "extra": 1}\n' + b"[" * 100 + b"\n" + b"\xff\n"
                            + b'{"to": "x", "message": "\\ud800"}\n')
    assert items == []
    assert problems == [
        (1, 'not an object {"to", "message", "key"?}'), (2, "the field 'message' is missing"),
        (3, "the field 'to' is empty"), (4, "the field 'message' is empty"),
        (5, "the field 'message' must be a string"), (6, "the key is not 1 to 64 letters, digits, '-', '_' or '.'"),
        (7, "unknown field 'extra' (an item has to, message, key)"),
        (8, "the JSON nests 100 levels deep; at most 16 are accepted"), (9, "the JSON is not valid UTF-8"),
        (10, "the field 'message' is not valid Unicode text (a lone surrogate)")]


def test_a_line_too_long_is_refused_without_reading_it_whole_and_the_next_ones_still_count():
    long_line = b'{"to": "x", "message": "' + b"y" * (MAX_LINE_BYTES * 2) + b'"}\n'
    items, problems = _read(long_line + b'{"to": "x", "message": "after"}\n')
    assert problems == [(1, f"longer than {MAX_LINE_BYTES} bytes")]
    assert items == [(2, {"to": "x", "message": "after"})]
