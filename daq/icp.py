"""ICP results of a product: read an instrument's CSV export, validate every row, convert to oxides.

docs/results.md is the user guide of the CSV format and its column mapping. In short:

- one row per sample and element line (``Nd 401.225`` for ICP-OES, ``146Nd`` for ICP-MS, or just ``Nd``);
  columns sample id, line, value, unit, RSD % and (optional) detection limit, found by name through a
  mapping (:data:`DEFAULT_COLUMNS`, or a mapping TOML file, :func:`load_mapping`);
- units of the solid (mg/kg, ug/g, ppm, ug/kg, ng/g, ppb, g/kg, mg/g, %, wt%), or of the digest solution
  (mg/L, ug/L) with the digestion mass and volume (:class:`Digestion`) that turn them into mg/kg;
- ``<LOD``, ``<0.5``, ``ND``, ``n.d.``, ``BDL`` are "below the detection limit" (the limit from the text or
  the detection-limit column);
- every problem is reported as ``file:line: problem`` (line numbers of the file, the header included), all
  of them at once, in an :class:`IcpFileError`; nothing is returned from a file with a problem.

Mass fractions are kept in mg/kg of the solid as analysed. Rare earths convert to their trade oxides with
:func:`analysis.oxide_factor`; other elements with :data:`NON_REE_OXIDES` (analysis.elements knows only the
rare earths), factors computed from IUPAC 2021 atomic weights and the oxide formula, never typed in.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analysis import OXYGEN_ATOMIC_WEIGHT, RARE_EARTHS, element, oxide_factor

from ._config_fields import number, text
from .config import load_toml_model

__all__ = [
    "DEFAULT_COLUMNS",
    "NON_REE_OXIDES",
    "SOLID_UNITS_MG_PER_KG",
    "SOLUTION_UNITS_MG_PER_L",
    "ColumnMapping",
    "Digestion",
    "IcpElement",
    "IcpFileError",
    "IcpResults",
    "IcpRow",
    "known_elements",
    "load_mapping",
    "oxide_of",
    "oxide_factor_of",
    "parse_line",
    "read_icp_csv",
]

# -- elements and oxides -------------------------------------------------------------------------

_NON_REE_TABLE = {
    # symbol: (standard atomic weight, IUPAC 2021 abridged; oxide the trade reports it as)
    "Al": (26.981538, "Al2O3"),
    "Ba": (137.327, "BaO"),
    "Ca": (40.078, "CaO"),
    "Co": (58.933194, "CoO"),
    "Cr": (51.9961, "Cr2O3"),
    "Cu": (63.546, "CuO"),
    "Fe": (55.845, "Fe2O3"),
    "K": (39.0983, "K2O"),
    "Mg": (24.305, "MgO"),
    "Mn": (54.938043, "MnO"),
    "Na": (22.98976928, "Na2O"),
    "Ni": (58.6934, "NiO"),
    "P": (30.973762, "P2O5"),
    "Pb": (207.2, "PbO"),
    "Si": (28.085, "SiO2"),
    "Sr": (87.62, "SrO"),
    "Th": (232.0377, "ThO2"),
    "Ti": (47.867, "TiO2"),
    "U": (238.02891, "U3O8"),
    "Zn": (65.38, "ZnO"),
    "Zr": (91.224, "ZrO2"),
}


def _non_ree_factor(symbol: str) -> float:
    weight, oxide = _NON_REE_TABLE[symbol]
    match = re.fullmatch(rf"{symbol}(\d*)O(\d*)", oxide)
    if match is None:  # the table above is written so that this never happens
        raise ValueError(f"cannot read oxide formula {oxide!r}")
    metal, oxygen = int(match.group(1) or 1), int(match.group(2) or 1)
    return (metal * weight + oxygen * OXYGEN_ATOMIC_WEIGHT) / (metal * weight)


NON_REE_OXIDES: Mapping[str, tuple[str, float]] = {
    symbol: (oxide, _non_ree_factor(symbol)) for symbol, (_weight, oxide) in _NON_REE_TABLE.items()
}
"""Non-rare-earth element -> (reported oxide, mass of oxide per mass of element)."""


def known_elements() -> tuple[str, ...]:
    """Every element an ICP file may report: the rare earths, then the non-rare-earth impurities."""
    return (*RARE_EARTHS, *NON_REE_OXIDES)


def oxide_of(symbol: str) -> str:
    """The oxide an element is reported as (Nd -> Nd2O3, Fe -> Fe2O3)."""
    return element(symbol).oxide if symbol in RARE_EARTHS else NON_REE_OXIDES[symbol][0]


def oxide_factor_of(symbol: str) -> float:
    """Mass of reported oxide per mass of element, for a rare earth or a non-rare-earth impurity."""
    return oxide_factor(symbol) if symbol in RARE_EARTHS else NON_REE_OXIDES[symbol][1]


_LINE = re.compile(r"^(?P<mass>\d{1,3})?\s*(?P<symbol>[A-Z][a-z]?)(?![a-z])\s*(?P<rest>.*)$")
_LINE_REST = re.compile(
    r"^(?:\(?\s*(?P<number>\d{1,3}(?:\.\d+)?)\s*(?:nm)?\s*\)?)?\s*(?:\[[^\]]*\]|\([A-Za-z .-]+\)|\{[^}]*\})?\s*$"
)


def parse_line(text_: str) -> str:
    """The element symbol of an ICP line label: ``Nd 401.225``, ``Nd401.225 nm``, ``146Nd``, ``Nd146``,
    ``146Nd [He]``, ``Nd (axial)``, ``Nd``. ValueError when it is not one of :func:`known_elements`."""
    label = text_.strip()
    match = _LINE.match(label)
    if match is None or _LINE_REST.match(match.group("rest")) is None:
        raise ValueError(f"cannot read the element line {label!r} (expected e.g. 'Nd 401.225', '146Nd' or 'Nd')")
    symbol = match.group("symbol")
    if symbol not in known_elements():
        raise ValueError(f"unknown element {symbol!r} in line {label!r}; known: {', '.join(known_elements())}")
    return symbol


# -- units ---------------------------------------------------------------------------------------

SOLID_UNITS_MG_PER_KG: Mapping[str, float] = {
    "mg/kg": 1.0,
    "ug/g": 1.0,
    "ppm": 1.0,
    "ug/kg": 1e-3,
    "ng/g": 1e-3,
    "ppb": 1e-3,
    "g/kg": 1e3,
    "mg/g": 1e3,
    "%": 1e4,
    "wt%": 1e4,
}
"""Units of a mass fraction in the solid and their value in mg/kg (ppm and ppb are by mass, of the solid)."""
SOLUTION_UNITS_MG_PER_L: Mapping[str, float] = {"mg/l": 1.0, "ug/l": 1e-3}
"""Units of the digest solution and their value in mg/L; they need a :class:`Digestion`."""


def _unit_key(unit: str) -> str:
    key = unit.strip().lower().replace("µ", "u").replace("μ", "u").replace(" ", "")
    return {"wt.%": "wt%", "%w/w": "%", "%(w/w)": "%", "mg/kgdw": "mg/kg"}.get(key, key)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Digestion(_Strict):
    """How the solid was brought into solution: a solution concentration times ``volume_mL`` times
    ``dilution``, over ``mass_g``, is the mass fraction in the solid."""

    mass_g: Annotated[float, number(gt=0, le=1000)]
    volume_mL: Annotated[float, number(gt=0, le=100000)]
    dilution: Annotated[float, number(ge=1, le=1e7)] = 1.0

    def mg_per_kg(self, value_mg_per_L: float) -> float:
        """Mass fraction in the solid (mg/kg) of a digest concentration (mg/L)."""
        return value_mg_per_L * (self.volume_mL / 1000.0) * self.dilution / (self.mass_g / 1000.0)


# -- column mapping ------------------------------------------------------------------------------

DEFAULT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "sample_id": ("Sample ID", "Sample Id", "Sample", "Sample Name", "Solution Label", "Label"),
    "line": ("Element", "Analyte", "Element Line", "Line", "Isotope", "Mass", "Element Label"),
    "value": ("Value", "Concentration", "Conc", "Conc.", "Result", "Soln Conc", "Sample Conc"),
    "unit": ("Unit", "Units", "Conc Unit", "Soln Conc Units"),
    "rsd_percent": ("RSD %", "RSD", "%RSD", "RSD (%)", "Conc RSD", "Conc. RSD"),
    "detection_limit": ("Detection Limit", "LOD", "DL", "MDL", "IDL", "LOQ"),
}
"""The column names looked for, per field, when no mapping file is given (compared without case and spaces)."""
_REQUIRED = ("sample_id", "line", "value", "unit", "rsd_percent")
_FIELD_WORDS = {
    "sample_id": "sample id",
    "line": "element line",
    "value": "value",
    "unit": "unit",
    "rsd_percent": "RSD %",
    "detection_limit": "detection limit",
}

ColumnNames = Annotated[str | list[Annotated[str, text(min_length=1, max_length=100)]], Field()]


class _Columns(_Strict):
    sample_id: ColumnNames | None = None
    line: ColumnNames | None = None
    value: ColumnNames | None = None
    unit: ColumnNames | None = None
    rsd_percent: ColumnNames | None = None
    detection_limit: ColumnNames | None = None


class ColumnMapping(_Strict):
    """Which CSV column holds what (:func:`load_mapping` reads one from a TOML file)."""

    name: Annotated[str, text(max_length=200)] = "default"
    default_unit: Annotated[str, text(max_length=20)] = ""
    """The unit of every value when the file has no unit column (e.g. the unit is only in a header)."""
    columns: _Columns = _Columns()
    source: Path | None = None

    def candidates(self, field_name: str) -> tuple[str, ...]:
        given = getattr(self.columns, field_name)
        if given is None:
            return DEFAULT_COLUMNS[field_name]
        return (given,) if isinstance(given, str) else tuple(given)


def load_mapping(path: str | os.PathLike) -> ColumnMapping:
    """Read a column mapping TOML file (``[mapping]`` name, default_unit; ``[columns]`` field = "CSV name")."""
    return load_toml_model(path, ColumnMapping, "mapping", "name, default_unit", {"columns": "columns"})


# -- rows and results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IcpRow:
    """One validated row of an ICP file, converted to mg/kg of the solid."""

    line_number: int  # in the file, the header row included (1-based)
    sample_id: str
    line: str  # the element line as written
    element: str
    unit: str  # as written
    value_mg_per_kg: float  # NaN when below the detection limit
    rsd_percent: float  # NaN when not given (below the detection limit)
    detection_limit_mg_per_kg: float  # NaN when not given
    below_detection_limit: bool


@dataclass(frozen=True)
class IcpElement:
    """One element of the product sample: its lines combined, as element and as oxide (mg/kg of the solid).

    Several lines of one element are averaged; ``sigma_mg_per_kg`` is the standard uncertainty of that mean
    from the lines' RSDs (independent). Below the detection limit, the value is NaN, the limit is the lowest
    of the lines', and the element counts 0 in the totals (docs/results.md).
    """

    element: str
    lines: tuple[str, ...]
    rows: tuple[int, ...]
    value_mg_per_kg: float
    sigma_mg_per_kg: float
    detection_limit_mg_per_kg: float
    below_detection_limit: bool
    oxide: str
    oxide_factor: float

    @property
    def rare_earth(self) -> bool:
        return self.element in RARE_EARTHS

    @property
    def rsd_percent(self) -> float:
        return 100.0 * self.sigma_mg_per_kg / self.value_mg_per_kg if self.value_mg_per_kg > 0 else math.nan

    @property
    def oxide_mg_per_kg(self) -> float:
        """0 below the detection limit (it counts as not detected)."""
        return 0.0 if self.below_detection_limit else self.value_mg_per_kg * self.oxide_factor

    @property
    def oxide_sigma_mg_per_kg(self) -> float:
        return 0.0 if self.below_detection_limit else self.sigma_mg_per_kg * self.oxide_factor

    @property
    def oxide_detection_limit_mg_per_kg(self) -> float:
        return self.detection_limit_mg_per_kg * self.oxide_factor


@dataclass(frozen=True)
class IcpResults:
    """The validated ICP file: every row, and the elements of the chosen sample."""

    source: Path
    text: str  # the file as read (kept in the product file)
    sample_id: str
    samples: tuple[str, ...]
    rows: tuple[IcpRow, ...]
    elements: tuple[IcpElement, ...] = field(default=())
    mapping: str = "default"

    def element(self, symbol: str) -> IcpElement:
        for item in self.elements:
            if item.element == symbol:
                return item
        raise KeyError(f"{self.source}: sample {self.sample_id!r} has no {symbol} result")

    @property
    def rare_earths(self) -> tuple[IcpElement, ...]:
        return tuple(e for e in self.elements if e.rare_earth)

    @property
    def impurities(self) -> tuple[IcpElement, ...]:
        """The non-rare-earth elements."""
        return tuple(e for e in self.elements if not e.rare_earth)


class IcpFileError(ValueError):
    """An ICP file that cannot be used; ``problems`` are ``file:line: problem`` texts, all of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = f"\n  ({len(problems)} problems)" if len(problems) > 1 else ""
        super().__init__("\n".join(problems) + more)


class _RowModel(_Strict):
    sample_id: Annotated[str, Field(min_length=1, max_length=200)]
    line: Annotated[str, Field(min_length=1, max_length=100)]
    value: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None  # None: below the detection limit
    rsd_percent: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] | None  # None: not given
    detection_limit: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None  # None: not given


_BELOW_WORDS = {"<lod", "<dl", "<mdl", "<loq", "<idl", "nd", "n.d.", "bdl", "<", "bld", "u"}
_LESS_THAN = re.compile(r"^<\s*(?P<limit>[0-9.]+(?:[eE][-+]?\d+)?)$")
_HEADER_SEARCH_ROWS = 50


def _number(cell: str, what: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise ValueError(f"{what} {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {cell.strip()!r} is not a finite number")
    return value


def _read_value(cell: str, limit_cell: str) -> tuple[float, float, bool]:
    """(value, detection limit, below the limit) in the row's unit; NaN where not given."""
    raw = cell.strip()
    limit = _number(limit_cell, "detection limit") if limit_cell.strip() else math.nan
    if not raw:
        raise ValueError("no value (an empty cell; write <LOD for a result below the detection limit)")
    less = _LESS_THAN.match(raw)
    if less is not None:
        return math.nan, _number(less.group("limit"), "detection limit"), True
    if raw.lower().replace(" ", "") in _BELOW_WORDS:
        if math.isnan(limit):
            raise ValueError(f"{raw!r} (below the detection limit) but the row gives no detection limit")
        return math.nan, limit, True
    value = _number(raw, "value")
    if value < 0:
        raise ValueError(
            f"negative value {raw}: a mass fraction cannot be negative (a blank-corrected result below zero "
            "is below the detection limit: write <LOD)"
        )
    return value, limit, False


def _find_header(rows: list[list[str]], mapping: ColumnMapping) -> tuple[int, dict[str, int]] | None:
    """The index of the first row that names every required column, and the column of each field."""

    def key(name: str) -> str:
        return re.sub(r"\s+", "", name).lower()

    required = [f for f in _REQUIRED if not (f == "unit" and mapping.default_unit)]
    for index, row in enumerate(rows[:_HEADER_SEARCH_ROWS]):
        cells = {key(c): i for i, c in reversed(list(enumerate(row)))}
        found = {}
        for field_name in (*_REQUIRED, "detection_limit"):
            for candidate in mapping.candidates(field_name):
                if key(candidate) in cells:
                    found[field_name] = cells[key(candidate)]
                    break
        if all(f in found for f in required):
            return index, found
    return None


def _missing_columns(path: Path, rows: list[list[str]], mapping: ColumnMapping) -> str:
    first = next((r for r in rows if any(c.strip() for c in r)), [])
    if not first:
        return f"{path}:1: the file is empty (no header row, no results)"
    keys = {re.sub(r"\s+", "", c).lower() for c in first}
    missing = [
        f"{_FIELD_WORDS[f]} (looked for {', '.join(repr(c) for c in mapping.candidates(f))})"
        for f in _REQUIRED
        if not (f == "unit" and mapping.default_unit)
        and not any(re.sub(r"\s+", "", c).lower() in keys for c in mapping.candidates(f))
    ]
    where = "a column mapping file" if mapping.source is None else f"the mapping {mapping.source}"
    return (
        f"{path}:1: missing columns: {'; '.join(missing)}; the header has {', '.join(repr(c) for c in first)} "
        f"(name the columns with {where}, see docs/results.md)"
    )


def _sniffed_delimiter(content: str) -> str:
    try:
        return csv.Sniffer().sniff(content[:4096], delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older instrument software writes Windows-1252/Latin-1


def read_icp_csv(
    path: str | os.PathLike,
    *,
    mapping: ColumnMapping | str | os.PathLike | None = None,
    sample_id: str | None = None,
    digestion: Digestion | None = None,
) -> IcpResults:
    """Read and validate an ICP export; the elements of ``sample_id`` (or of the file's only sample).

    Raises :class:`IcpFileError` with every problem (``file:line: problem``) of the whole file: the rows
    of other samples are checked too. ``mapping``: a :class:`ColumnMapping` or the path of a mapping file
    (default: :data:`DEFAULT_COLUMNS`). ``digestion``: needed for solution units (mg/L, ug/L).
    """
    path = Path(path)
    if mapping is None:
        mapping = ColumnMapping()
    elif not isinstance(mapping, ColumnMapping):
        mapping = load_mapping(mapping)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise IcpFileError([f"{path}: cannot be read: {error.strerror or error}"]) from None
    content = _decode(path, data)
    header = None
    rows: list[list[str]] = []
    for delimiter in dict.fromkeys((_sniffed_delimiter(content), ",", ";", "\t")):
        rows = list(csv.reader(io.StringIO(content), delimiter=delimiter))
        header = _find_header(rows, mapping)
        if header is not None:
            break
    if header is None:
        rows = list(csv.reader(io.StringIO(content), delimiter=_sniffed_delimiter(content)))
        raise IcpFileError([_missing_columns(path, rows, mapping)])
    header_index, columns = header
    problems: list[str] = []
    parsed: list[IcpRow] = []
    seen: dict[tuple[str, str], int] = {}
    for index in range(header_index + 1, len(rows)):
        row = rows[index]
        number_in_file = index + 1
        if not any(c.strip() for c in row):
            continue

        def cell(field_name: str, row=row) -> str:
            column = columns.get(field_name)
            return row[column] if column is not None and column < len(row) else ""

        where = f"{path}:{number_in_file}"
        try:
            symbol = parse_line(cell("line"))
            unit = cell("unit").strip() or mapping.default_unit
            value, limit, below = _read_value(cell("value"), cell("detection_limit"))
            rsd = _number(cell("rsd_percent"), "RSD %") if cell("rsd_percent").strip() else math.nan
            if math.isnan(rsd) and not below:
                raise ValueError("no RSD % (the uncertainty of every result is needed for the purity's)")
            _RowModel(
                sample_id=cell("sample_id").strip(),
                line=cell("line").strip(),
                value=_given(value),
                rsd_percent=_given(rsd),
                detection_limit=_given(limit),
            )
            scale = _unit_scale(unit, digestion)
        except ValueError as error:
            problems.append(f"{where}: {_row_message(error)}")
            continue
        key = (cell("sample_id").strip(), cell("line").strip())
        if key in seen:
            problems.append(
                f"{where}: duplicate row: sample {key[0]!r} line {key[1]!r} is also on line {seen[key]} "
                "(one result per sample and line)"
            )
            continue
        seen[key] = number_in_file
        parsed.append(
            IcpRow(
                line_number=number_in_file,
                sample_id=key[0],
                line=key[1],
                element=symbol,
                unit=unit,
                value_mg_per_kg=value * scale,
                rsd_percent=rsd,
                detection_limit_mg_per_kg=limit * scale,
                below_detection_limit=below,
            )
        )
    if not parsed and not problems:
        problems.append(f"{path}:{header_index + 2}: no results below the header row")
    if problems:
        raise IcpFileError(problems)
    samples = tuple(dict.fromkeys(r.sample_id for r in parsed))
    if sample_id is None:
        if len(samples) != 1:
            raise IcpFileError(
                [f"{path}: {len(samples)} samples ({', '.join(map(repr, samples))}): say which is the product"]
            )
        sample_id = samples[0]
    elif sample_id not in samples:
        raise IcpFileError([f"{path}: no sample {sample_id!r}; the file has {', '.join(map(repr, samples))}"])
    elements = _combine(path, [r for r in parsed if r.sample_id == sample_id])
    return IcpResults(
        source=path,
        text=content,
        sample_id=sample_id,
        samples=samples,
        rows=tuple(parsed),
        elements=elements,
        mapping=mapping.name if mapping.source is None else f"{mapping.name} ({mapping.source.name})",
    )


def _given(value: float) -> float | None:
    return None if math.isnan(value) else value


def _row_message(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            name = _FIELD_WORDS.get(str(item["loc"][0]), str(item["loc"][0])) if item["loc"] else "row"
            parts.append(f"{name}: {item['msg']} (got {item.get('input')!r})")
        return "; ".join(parts)
    return str(error)


def _unit_scale(unit: str, digestion: Digestion | None) -> float:
    """mg/kg of the solid per unit of the row."""
    key = _unit_key(unit)
    if key in SOLID_UNITS_MG_PER_KG:
        return SOLID_UNITS_MG_PER_KG[key]
    if key in SOLUTION_UNITS_MG_PER_L:
        if digestion is None:
            raise ValueError(
                f"unit {unit!r} is a concentration of the digest solution: give the digestion "
                "([digestion] mass_g and volume_mL in the results file) to convert it to mg/kg of the solid"
            )
        return digestion.mg_per_kg(SOLUTION_UNITS_MG_PER_L[key])
    known = ", ".join([*SOLID_UNITS_MG_PER_KG, "mg/L", "ug/L"])
    raise ValueError(f"unit {unit!r} does not convert to a mass fraction (mg/kg); known units: {known}")


def _combine(path: Path, rows: Iterable[IcpRow]) -> tuple[IcpElement, ...]:
    by_element: dict[str, list[IcpRow]] = {}
    for row in rows:
        by_element.setdefault(row.element, []).append(row)
    order = {symbol: i for i, symbol in enumerate(known_elements())}
    out = []
    for symbol in sorted(by_element, key=order.__getitem__):
        lines = by_element[symbol]
        quantified = [r for r in lines if not r.below_detection_limit]
        limits = [r.detection_limit_mg_per_kg for r in lines if not math.isnan(r.detection_limit_mg_per_kg)]
        limit = min(limits) if limits else math.nan
        if quantified:
            n = len(quantified)
            value = sum(r.value_mg_per_kg for r in quantified) / n
            sigma = math.sqrt(sum((r.value_mg_per_kg * r.rsd_percent / 100.0) ** 2 for r in quantified)) / n
        else:
            value, sigma = math.nan, math.nan
        out.append(
            IcpElement(
                element=symbol,
                lines=tuple(r.line for r in lines),
                rows=tuple(r.line_number for r in lines),
                value_mg_per_kg=value,
                sigma_mg_per_kg=sigma,
                detection_limit_mg_per_kg=limit,
                below_detection_limit=not quantified,
                oxide=oxide_of(symbol),
                oxide_factor=oxide_factor_of(symbol),
            )
        )
    return tuple(out)
