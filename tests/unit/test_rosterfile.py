"""The file of ``deptcast roster import`` (``components.ops.rosterfile``): rows ``dept,user``
checked by the contract's name rules, a header optional, repeats once."""

from components.ops.rosterfile import read_roster


def test_rows_with_or_without_a_header():
    assert read_roster("dept,user\ncardio,bob\n\nonco, ann \n") == ([("cardio", "bob"), ("onco", "ann")], [])
    assert read_roster("cardio,bob\r\ncardio,bob\r\ncardio,eve") == ([("cardio", "bob"), ("cardio", "eve")], [])
    assert read_roster("DEPT,User\n") == ([], [])


def test_every_bad_line_is_named_with_its_number():
    rows, problems = read_roster("dept,user\ncardio,bob\ncardio\nAll,bob\ncar_dio,bob\ncardio,b ob\n"
                                 "cardio,bob,extra\n.cardio,x\n\"unclosed,x\n")
    assert rows == [("cardio", "bob")]
    assert [n for n, _ in problems] == [3, 4, 5, 6, 7, 8, 9]
    assert problems[0] == (3, "1 columns; a row is dept,user")
    assert problems[1] == (4, "'All' is not a department (it means everyone)")
    assert problems[2][1].startswith("'car_dio' is not a department code")
    assert problems[3][1].startswith("'b ob' is not a user id")
    assert problems[5][1].startswith("'.cardio' is not a department code")


def test_a_header_is_only_the_first_row():
    rows, problems = read_roster("cardio,bob\ndept,user\n")
    assert rows == [("cardio", "bob"), ("dept", "user")] and problems == []
