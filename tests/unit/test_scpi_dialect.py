"""SCPI dialects (hardware/maps/scpi-*.toml) checked by a schema: ``file: field: problem``, all at once.

Decision 0068: unknown keys refused, every value rule, all problems of a file together, every shipped dialect loads.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from drivers import MapError
from drivers._scpi_dialect import (
    OPTIONAL_COMMANDS,
    REQUIRED_COMMANDS,
    CommandsTable,
    DialectDocument,
    ScpiDialect,
    load_dialect,
)
from drivers.maps import known_maps, maps_dir

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "hardware/maps/scpi-spectrometer.toml"
GOOD = SHIPPED.read_text()


def refused(tmp_path, text: str, name: str = "mine.toml") -> list[str]:
    """The problem lines (``field: problem``) of a dialect file with ``text``; each line starts with the file."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MapError) as caught:
        load_dialect(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    assert caught.value.path == path and len(caught.value.problems) == len(lines)
    return list(caught.value.problems)


def edited(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


# --- every shipped dialect loads ---------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in known_maps("commands")])
def test_every_shipped_dialect_loads(name):
    dialect = load_dialect(name)
    assert isinstance(dialect, ScpiDialect) and dialect.name == name
    assert set(REQUIRED_COMMANDS) <= set(dialect.commands)
    assert dialect.measure and dialect.measure[-1].endswith("?")


def test_the_shipped_dialects_are_the_scpi_maps():
    assert [p.stem for p in sorted(maps_dir().glob("scpi-*.toml"))] == known_maps("commands") == ["scpi-spectrometer"]


def test_the_shipped_dialect_loads_as_the_driver_speaks_it():
    dialect = load_dialect("scpi-spectrometer")
    assert (dialect.read_termination, dialect.write_termination, dialect.full_scale_counts, dialect.fixed_pixels) == (
        "\n",
        "\n",
        65535.0,
        None,
    )
    assert dialect.command("set_integration_time", seconds=0.0123456789) == "SENS:INT:TIME 0.0123456789"
    assert dialect.command("set_averages", count=8) == "SENS:AVER:COUN 8"
    assert dialect.setup == ("FORM:DATA REAL,32", "FORM:BORD SWAP") and dialect.measure == ("MEAS:SPEC?",)
    assert dialect.commands["clear_status"] == "*CLS" and dialect.commands["pixel_count"] == "SENS:DET:PIX?"
    assert dialect.description.startswith("Generic SCPI UV-Vis-NIR")


def test_every_key_of_the_shipped_dialect_is_one_the_schema_knows():
    document = tomllib.loads(GOOD)
    assert set(document) == set(DialectDocument.model_fields)
    for table, keys in document.items():
        model = DialectDocument.model_fields[table].annotation
        assert set(keys) <= set(model.model_fields), (table, set(keys) - set(model.model_fields))


def test_the_schema_lists_exactly_the_commands_the_driver_knows():
    assert set(CommandsTable.model_fields) == {*REQUIRED_COMMANDS, *OPTIONAL_COMMANDS, "setup", "measure"}
    required = {name for name, field in CommandsTable.model_fields.items() if field.is_required()}
    assert required == {*REQUIRED_COMMANDS, "measure"}


# --- unknown keys ------------------------------------------------------------------------------------
def test_a_misspelt_key_is_an_unknown_key_naming_file_and_field(tmp_path):
    problems = refused(
        tmp_path, edited('set_averages = "SENS:AVER:COUN {count:d}"', 'set_avrages = "SENS:AVER:COUN {count:d}"')
    )
    assert (
        "commands.set_avrages: unknown key (check the spelling; allowed: identify, clear_status, next_error, "
        "pixel_count, wavelength_coefficients, set_integration_time, get_integration_time, set_averages, "
        "get_averages, shutter_open, shutter_close, setup, measure)" in problems
    )
    assert "commands.set_averages: missing required key" in problems


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("full_scale_counts = 65535", "full_scale_count = 65535", "instrument.full_scale_count"),
        ('read_termination = "\\n"', 'read_terminator = "\\n"', "connection.read_terminator"),
        ("\n[connection]\n", "\n[conection]\n", "conection"),
        ('identify = "*IDN?"', 'identify = "*IDN?"\nreset = "*RST"', "commands.reset"),  # read by nothing: removed
        ("\n[instrument]\n", '\nextends = "scpi-spectrometer"\n[instrument]\n', "extends"),
    ],
)
def test_unknown_keys_and_tables_are_refused(tmp_path, old, new, field):
    problems = refused(tmp_path, edited(old, new))
    assert any(p.startswith(f"{field}: unknown key (check the spelling") for p in problems), problems


# --- values ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "old, new, line",
    [
        (
            "full_scale_counts = 65535",
            "full_scale_counts = true",
            "instrument.full_scale_counts: expected a number, not a boolean (got true)",
        ),
        (
            "full_scale_counts = 65535",
            "full_scale_counts = 0",
            "instrument.full_scale_counts: Input should be greater than 0 (got 0)",
        ),
        (
            "full_scale_counts = 65535",
            'full_scale_counts = "65535"',
            "instrument.full_scale_counts: Input should be a valid number (got '65535')",
        ),
        (
            "full_scale_counts = 65535",
            "full_scale_counts = 65535\npixels = 2048.0",
            "instrument.pixels: Input should be a valid integer (got 2048.0)",
        ),
        (
            "full_scale_counts = 65535",
            "full_scale_counts = 65535\npixels = 70000",
            "instrument.pixels: Input should be less than or equal to 65536 (got 70000)",
        ),
        (
            'read_termination = "\\n"',
            "read_termination = 10",
            "connection.read_termination: Input should be a valid string (got 10)",
        ),
        (
            'read_termination = "\\n"',
            'read_termination = ""',
            "connection.read_termination: String should have at least 1 character (got '')",
        ),
        ('identify = "*IDN?"', 'identify = ""', "commands.identify: String should have at least 1 character (got '')"),
        ('identify = "*IDN?"', 'identify = "   "', "commands.identify: must not be blank (got '   ')"),
        (
            'identify = "*IDN?"',
            'identify = "*IDN?\\n"',
            "commands.identify: must be printable ASCII (found '\\n') (got '*IDN?\\n')",
        ),
        (
            'identify = "*IDN?"',
            'identify = ["*IDN?"]',
            "commands.identify: Input should be a valid string (got ['*IDN?'])",
        ),
        (
            'set_averages = "SENS:AVER:COUN {count:d}"',
            'set_averages = "SENS:AVER:COUN {seconds}"',
            "commands.set_averages: must use exactly {count} (got 'SENS:AVER:COUN {seconds}')",
        ),
        (
            'set_averages = "SENS:AVER:COUN {count:d}"',
            'set_averages = "SENS:AVER:COUN"',
            "commands.set_averages: must use exactly {count} (got 'SENS:AVER:COUN')",
        ),
        (
            'set_integration_time = "SENS:INT:TIME {seconds:.9g}"',
            'set_integration_time = "SENS:INT:TIME {seconds:d}"',
            "commands.set_integration_time: cannot be filled in with seconds = 0.1 "
            "(ValueError: Unknown format code 'd' "
            "for object of type 'float') (got 'SENS:INT:TIME {seconds:d}')",
        ),
        (
            'get_averages = "SENS:AVER:COUN?"',
            'get_averages = "SENS:AVER:COUN? {count}"',
            "commands.get_averages: must use no fields (a brace is written {{ or }}) (got 'SENS:AVER:COUN? {count}')",
        ),
        (
            'identify = "*IDN?"',
            'identify = "*IDN? {"',
            "commands.identify: not a valid template "
            "(Single '{' encountered in format string; a brace is written {{ or }})"
            " (got '*IDN? {')",
        ),
        (
            'measure = ["MEAS:SPEC?"]',
            'measure = ["INIT"]',
            "commands.measure: the last command must be the query the block answers (ending with '?') (got ['INIT'])",
        ),
        (
            'measure = ["MEAS:SPEC?"]',
            "measure = []",
            "commands.measure: List should have at least 1 item after validation, not 0 (got [])",
        ),
        (
            'setup = ["FORM:DATA REAL,32", "FORM:BORD SWAP"]',
            'setup = ["FORM:DATA REAL,32", 5]',
            "commands.setup[1]: Input should be a valid string (got 5)",
        ),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_field(tmp_path, old, new, line):
    assert refused(tmp_path, edited(old, new)) == [line]


def test_a_setup_command_is_sent_as_written_braces_included(tmp_path):
    path = tmp_path / "braces.toml"
    path.write_text(edited('setup = ["FORM:DATA REAL,32", "FORM:BORD SWAP"]', 'setup = ["SYST:LABEL {lab}"]'))
    assert load_dialect(path).setup == ("SYST:LABEL {lab}",)


def test_without_a_pixel_count_query_the_dialect_must_fix_the_pixels(tmp_path):
    no_query = edited('pixel_count = "SENS:DET:PIX?"', "")
    assert refused(tmp_path, no_query) == [
        "commands.pixel_count: missing: give [commands] pixel_count (a query) or [instrument] pixels"
    ]
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(no_query.replace("full_scale_counts = 65535", "full_scale_counts = 65535\npixels = 3648"))
    assert load_dialect(fixed).fixed_pixels == 3648


def test_optional_commands_and_tables_may_be_left_out(tmp_path):
    lean = tomllib.loads(GOOD)
    del lean["instrument"], lean["connection"], lean["commands"]["clear_status"], lean["commands"]["setup"]
    lines = ["[commands]"] + [f"{key} = {value!r}".replace("'", '"') for key, value in lean["commands"].items()]
    path = tmp_path / "lean.toml"
    path.write_text("\n".join(lines) + "\n")
    dialect = load_dialect(path)
    assert "clear_status" not in dialect.commands and dialect.setup == ()
    assert (dialect.read_termination, dialect.full_scale_counts, dialect.description) == ("\n", 65535.0, "")


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    text = (
        edited("full_scale_counts = 65535", "full_scale_counts = -1\npixel = 3")
        .replace('set_averages = "SENS:AVER:COUN {count:d}"', 'set_averages = "SENS:AVER:COUN {n}"')
        .replace('next_error = "SYST:ERR?"', 'next_eror = "SYST:ERR?"')
        .replace('measure = ["MEAS:SPEC?"]', 'measure = ["INIT"]')
    )
    problems = refused(tmp_path, text)
    fields = [problem.split(": ", 1)[0] for problem in problems]
    assert sorted(fields) == sorted(
        [
            "instrument.full_scale_counts",
            "instrument.pixel",
            "commands.next_error",
            "commands.next_eror",
            "commands.set_averages",
            "commands.measure",
        ]
    ), problems


def test_a_register_map_is_not_a_dialect_one_line_not_one_per_key():
    with pytest.raises(MapError) as caught:
        load_dialect("eurotherm-2400")
    assert caught.value.problems == ("commands: missing table [commands]: not a SCPI dialect (a SCPI dialect has one)",)
    assert str(caught.value).startswith(str(ROOT / "hardware/maps/eurotherm-2400.toml") + ": commands: ")


def test_an_unknown_dialect_lists_the_known_ones():
    with pytest.raises(MapError, match=r"no SCPI dialect 'nope' \(known: scpi-spectrometer\)"):
        load_dialect("nope")


def test_a_dialect_that_is_not_toml_is_a_map_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[commands\nidentify = ")
    with pytest.raises(MapError):
        load_dialect(path)
