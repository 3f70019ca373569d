"""The SCPI dialect a spectrometer speaks, read from ``hardware/maps/<name>.toml`` and checked.

Checked once, when the driver is built (and when a station naming it is
loaded), so that a mistyped dialect fails with the file and key named instead
of at the first acquisition. The file is checked against a schema
(:class:`DialectDocument`, decision 0068) with the rules of register maps and
station files (:mod:`drivers._schema`): every key is known (a misspelt one is
``unknown key``, with the keys allowed there), every value has its type and
range, and every problem of the file is reported at once, one
``file: field: problem`` line each, in a :class:`~drivers.MapError`.

Every key is read: commands are sent, ``[connection]`` frames them,
``[instrument] pixels`` and ``full_scale_counts`` check what comes back;
``[instrument] description`` is documentation, kept on the loaded dialect.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError, model_validator

from ._schema import Description, StrictModel, field_error, problems
from .maps import MapError, find_map, load_map

MAX_PIXELS = 65536
"""Most pixels a spectrometer may have (array detectors have up to a few thousand)."""

#: Largest full scale a dialect may state: a 32-bit ADC.
MAX_FULL_SCALE_COUNTS = float(2**32)

#: Most commands in ``setup`` or ``measure``.
MAX_COMMAND_LIST = 16

__all__ = ["ScpiDialect", "DialectDocument", "REQUIRED_COMMANDS", "OPTIONAL_COMMANDS", "load_dialect"]

#: Commands every dialect gives, with the fields each template must use.
REQUIRED_COMMANDS = {
    "identify": (),
    "next_error": (),
    "wavelength_coefficients": (),
    "set_integration_time": ("seconds",),
    "get_integration_time": (),
    "set_averages": ("count",),
    "get_averages": (),
    "shutter_open": (),
    "shutter_close": (),
}
#: Commands a dialect may give (``pixel_count`` unless ``[instrument] pixels`` is given).
OPTIONAL_COMMANDS = {"clear_status": (), "pixel_count": ()}

#: A value of each field, to try a template with: a template that cannot format it is refused.
_SAMPLE_FIELDS = {"seconds": 0.1, "count": 4}


@dataclass(frozen=True)
class ScpiDialect:
    """Command strings and framing of one instrument family."""

    name: str
    read_termination: str
    write_termination: str
    full_scale_counts: float
    fixed_pixels: int | None
    commands: dict[str, str]
    setup: tuple[str, ...]
    measure: tuple[str, ...]
    description: str = ""

    def command(self, key: str, **fields) -> str:
        """The command string for ``key`` with its fields filled in."""
        return self.commands[key].format(**fields)


# -- the schema ---------------------------------------------------------------------------------


def _printable_ascii(value: str) -> str:
    bad = sorted({c for c in value if not " " <= c <= "~"})
    if bad:
        raise ValueError(f"must be printable ASCII (found {', '.join(map(repr, bad))})")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _ascii(value: str) -> str:
    if not value.isascii():
        raise ValueError("must be ASCII")
    return value


def _template_checker(needed: tuple[str, ...]):
    """A validator of a command template that must use exactly the fields ``needed`` and fill them in."""

    def check(template: str) -> str:
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as error:  # e.g. a lone "{"
            raise ValueError(f"not a valid template ({error}; a brace is written {{{{ or }}}})") from None
        if used != set(needed):
            if needed:
                raise ValueError(f"must use exactly {', '.join(f'{{{name}}}' for name in needed)}")
            raise ValueError("must use no fields (a brace is written {{ or }})")
        try:
            template.format(**{name: _SAMPLE_FIELDS[name] for name in needed})
        except (ValueError, TypeError, KeyError, IndexError) as error:
            sample = ", ".join(f"{name} = {_SAMPLE_FIELDS[name]!r}" for name in needed)
            raise ValueError(f"cannot be filled in with {sample} ({type(error).__name__}: {error})") from None
        return template

    return check


def _ends_with_a_query(commands: list[str]) -> list[str]:
    if commands and not commands[-1].rstrip().endswith("?"):
        raise ValueError("the last command must be the query the block answers (ending with '?')")
    return commands


def template(*fields: str) -> Any:
    """A command template (printable ASCII, not blank) using exactly ``fields``."""
    return Annotated[
        str,
        Field(min_length=1, max_length=200),
        AfterValidator(_printable_ascii),
        AfterValidator(_template_checker(fields)),
    ]


# The templates as :func:`template` builds them, written out so that a type checker reads them.
#: One command without fields, sent as ``str.format`` leaves it (so a brace is written ``{{``).
Command = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_printable_ascii),
    AfterValidator(_template_checker(())),
]
#: ``template("seconds")``: the command setting the integration time.
SecondsCommand = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_printable_ascii),
    AfterValidator(_template_checker(("seconds",))),
]
#: ``template("count")``: the command setting the number of averages.
CountCommand = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_printable_ascii),
    AfterValidator(_template_checker(("count",))),
]
#: One command of ``setup`` or ``measure``, sent exactly as written (braces included).
Verbatim = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable_ascii)]
#: A line terminator: ASCII characters such as "\n" or "\r\n".
Termination = Annotated[str, Field(max_length=4), AfterValidator(_ascii)]


class InstrumentTable(StrictModel):
    """``[instrument]``: what every answer is checked against."""

    description: Description = ""
    full_scale_counts: Annotated[float, Field(gt=0, le=MAX_FULL_SCALE_COUNTS)] = 65535.0
    pixels: Annotated[int, Field(ge=1, le=MAX_PIXELS)] | None = None


class ConnectionTable(StrictModel):
    """``[connection]``: how commands and answers are framed."""

    read_termination: Annotated[str, Field(min_length=1, max_length=4), AfterValidator(_ascii)] = "\n"
    write_termination: Termination = "\n"


class CommandsTable(StrictModel):
    """``[commands]``: every command the driver sends (the fields of each: :data:`REQUIRED_COMMANDS`)."""

    identify: Command
    clear_status: Command | None = None
    next_error: Command
    pixel_count: Command | None = None
    wavelength_coefficients: Command
    set_integration_time: SecondsCommand
    get_integration_time: Command
    set_averages: CountCommand
    get_averages: Command
    shutter_open: Command
    shutter_close: Command
    setup: Annotated[list[Verbatim], Field(max_length=MAX_COMMAND_LIST)] = []
    measure: Annotated[
        list[Verbatim], Field(min_length=1, max_length=MAX_COMMAND_LIST), AfterValidator(_ends_with_a_query)
    ]


class DialectDocument(StrictModel):
    """A SCPI dialect file."""

    instrument: InstrumentTable = InstrumentTable()
    connection: ConnectionTable = ConnectionTable()
    commands: CommandsTable

    @model_validator(mode="after")
    def _pixel_count(self):
        if self.instrument.pixels is None and self.commands.pixel_count is None:
            raise field_error(
                ("commands", "pixel_count"), "missing: give [commands] pixel_count (a query) or [instrument] pixels"
            )
        return self


# -- loading --------------------------------------------------------------------------------------


def _validate(path: Path, document: dict) -> DialectDocument:
    if not isinstance(document.get("commands"), dict):  # another kind of map: one message, not one per key
        raise MapError.in_file(
            path, [("commands", "missing table [commands]: not a SCPI dialect (a SCPI dialect has one)")]
        )
    try:
        return DialectDocument.model_validate(document)
    except ValidationError as error:
        raise MapError.in_file(path, problems(error, DialectDocument)) from None


def load_dialect(name_or_path: str | os.PathLike) -> ScpiDialect:
    """Load and check a dialect; a MapError (a ValueError) with one ``file: field: problem`` line per problem."""
    path = find_map(name_or_path, kind="SCPI dialect", required_table="commands")
    doc = _validate(path, load_map(path))
    commands = doc.commands
    templates: dict[str, Any] = {key: getattr(commands, key) for key in {**REQUIRED_COMMANDS, **OPTIONAL_COMMANDS}}
    return ScpiDialect(
        name=path.stem,
        read_termination=doc.connection.read_termination,
        write_termination=doc.connection.write_termination,
        full_scale_counts=float(doc.instrument.full_scale_counts),
        fixed_pixels=doc.instrument.pixels,
        commands={key: template for key, template in templates.items() if template is not None},
        setup=tuple(commands.setup),
        measure=tuple(commands.measure),
        description=doc.instrument.description,
    )
