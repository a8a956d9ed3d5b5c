"""errors.py owns the exit codes: every EXIT_* constant has its row, and `lnl --help` is written from them."""

from lnl_cli import errors
from lnl_cli.cli import app


def test_every_exit_constant_has_one_row_with_its_own_name_and_value():
    constants = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")
                 and isinstance(value, int)}
    assert {code.name: code.value for code in errors.ALL_EXIT_CODES} == constants
    assert [code.value for code in errors.ALL_EXIT_CODES] == sorted(constants.values())
    assert all(code.summary and code.meaning for code in errors.ALL_EXIT_CODES)


def test_the_help_lists_every_exit_code_from_the_table():
    assert app.info.help.endswith(errors.HELP_ON_EXIT_CODES)
    for code in errors.ALL_EXIT_CODES:
        assert f"{code.value} {code.summary}" in errors.HELP_ON_EXIT_CODES
