"""A Modbus sensor's map, read from ``hardware/sensors/<name>.toml`` and checked: a new sensor is a map, not code.

Shared by the sensor driver (:mod:`drivers.sensor`) and the simulated sensors
(:mod:`drivers.sim._sensor_bank`), so that both speak exactly what the map
says. A sensor map has a ``[sensor]`` table (name, models, notes) and one
``[[channel]]`` table per quantity it reads: where it is (``register``,
``function`` 3 holding or 4 input), how it is encoded (``encoding``,
``word_order``), how a raw value becomes one in units (``value = raw * scale +
offset``), its ``units`` and its valid range (``valid_min``..``valid_max``: a
reading outside is not a measurement), optionally a status word whose
``fault_bits`` say the probe is faulty.

The file is checked against a schema (:class:`SensorDocument`, as register
maps are, decision 0058): every key is known, every value has its type and
range, then the rules between fields. A map error is a
:class:`~drivers.maps.MapError`: one ``file: field: problem`` line per problem,
all problems of the file at once. A map may ``extends = "<map>"`` another and
state only what differs: ``[sensor]`` merges key by key (``models`` is never
inherited: a derived map says which sensors it is for), channels merge by
``name`` (a channel of the parent's name is laid over it key by key, a new name
is added after the parent's channels); nothing can be removed.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from ._schema import NO_CONTROL_CHARACTERS, Description, StrictModel, field_error, problems
from ._text_file import UnreadableFileError, is_regular_file, read_small_toml_file, shorten
from .maps import MapError, deep_merge, effective_document, hardware_dir

__all__ = [
    "ENCODINGS",
    "NOT_INHERITED",
    "ReadBlock",
    "SensorChannel",
    "SensorDocument",
    "SensorMap",
    "find_sensor_map",
    "known_sensor_maps",
    "load_sensor_map",
    "resolve_sensor_map",
    "sensor_map_models",
    "sensors_dir",
]

#: Encodings of a channel's raw value and the 16-bit words each takes.
ENCODINGS: Mapping[str, int] = MappingProxyType({"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2})
#: Keys of [sensor] a map never inherits from the map it extends: which sensors it is for.
NOT_INHERITED = ("models",)
#: Most registers one read request may ask for (FC 3 and 4).
MAX_READ_COUNT = 125

_WORD_MAX = 0xFFFF
_LIMIT = 1e12  # largest magnitude of a scale, offset or valid bound (float32 reaches 3.4e38; no sensor comes near)
_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


def sensors_dir() -> Path:
    """The folder of the sensor maps that can be named without a path (``hardware/sensors``)."""
    return hardware_dir() / "sensors"


def known_sensor_maps() -> list[str]:
    """Names of the sensor maps in :func:`sensors_dir`."""
    return [path.stem for path in sorted(sensors_dir().glob("*.toml"))]


# -- the loaded map -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorChannel:
    """One quantity a sensor reads: where, how it is encoded and scaled, its units and valid range."""

    name: str
    register: int
    function: int  # 3 holding registers, 4 input registers
    encoding: str  # a key of ENCODINGS
    word_order: str  # "big": most significant word first; "little": least significant first (32-bit only)
    scale: float
    offset: float
    units: str
    valid_min: float
    valid_max: float
    status_register: int | None = None
    fault_bits: Mapping[int, str] = field(
        default_factory=lambda: MappingProxyType({})
    )  # bit of the status word -> what a set bit means
    simulated_default: float | None = None
    description: str = ""
    source: str = ""
    verify: str = ""

    @property
    def words(self) -> int:
        """How many 16-bit registers the raw value takes."""
        return ENCODINGS[self.encoding]

    @property
    def valid_range(self) -> str:
        """``0..14 1``, for messages."""
        return f"{self.valid_min:g}..{self.valid_max:g} {self.units}".rstrip()

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is a measurement: finite and within ``valid_min..valid_max``."""
        return math.isfinite(value) and self.valid_min <= value <= self.valid_max

    def raw(self, words: list[int] | tuple[int, ...]) -> float:
        """The raw value of the channel's words (an integer, or a float32 that may be NaN or infinite)."""
        if len(words) != self.words:
            raise ValueError(f"{self.name}: {len(words)} words where {self.words} were due")
        ordered = list(words) if self.word_order == "big" else list(reversed(words))
        data = struct.pack(f">{len(ordered)}H", *ordered)
        return struct.unpack(_STRUCT[self.encoding], data)[0]

    def decode(self, words: list[int] | tuple[int, ...]) -> float:
        """The value in ``units``: ``raw * scale + offset`` (NaN for a float32 that is not a number)."""
        raw = self.raw(words)
        if not math.isfinite(raw):
            return math.nan
        return raw * self.scale + self.offset

    def encode_raw(self, raw: float) -> list[int]:
        """The channel's words holding ``raw`` (an integer encoding: rounded and held within its range)."""
        if self.encoding == "float32":
            data = struct.pack(">f", raw)
        else:
            low, high = _integer_range(self.encoding)
            if math.isfinite(raw):
                number = max(low, min(high, round(raw)))
            else:
                number = high if raw > 0 else low  # NaN: the lowest
            data = struct.pack(_STRUCT[self.encoding], number)
        words = list(struct.unpack(f">{len(data) // 2}H", data))
        return words if self.word_order == "big" else list(reversed(words))

    def encode(self, value: float) -> list[int]:
        """The words a sensor sends for ``value`` in units (the nearest its encoding holds)."""
        return self.encode_raw((value - self.offset) / self.scale)

    def out_of_range_raw(self) -> float | None:
        """A raw value the encoding holds whose value is outside the valid range (None if there is none):
        for an integer encoding its largest raw value, else its smallest; for float32 one span beyond."""
        if self.encoding == "float32":
            span = self.valid_max - self.valid_min
            beyond = (self.valid_max + span - self.offset) / self.scale
            value = struct.unpack(">f", struct.pack(">f", beyond))[0]
            return value if not self.in_range(value * self.scale + self.offset) else None
        for raw in reversed(_integer_range(self.encoding)):
            if not self.in_range(raw * self.scale + self.offset):
                return float(raw)
        return None


def _integer_range(encoding: str) -> tuple[int, int]:
    bits = 16 * ENCODINGS[encoding]
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if encoding.startswith("int") else (0, (1 << bits) - 1)


@dataclass(frozen=True)
class ReadBlock:
    """One read request: ``count`` registers from ``address`` with ``function``, covering whole channels and
    status words (``channels``; ``statuses``: the status registers in it)."""

    function: int
    address: int
    count: int
    channels: tuple[SensorChannel, ...]
    statuses: tuple[int, ...]

    @property
    def what(self) -> str:
        names = [c.name for c in self.channels] + [f"status {a}" for a in self.statuses]
        return "+".join(names)


@dataclass(frozen=True)
class SensorMap:
    """A checked sensor map; see ``hardware/sensors/ph-transmitter.toml`` and docs/instruments/sensors.md."""

    name: str
    path: Path
    sensor_name: str
    channels: tuple[SensorChannel, ...]
    models: tuple[str, ...] = ()
    maker: str = ""
    description: str = ""
    source: str = ""
    verify: str = ""

    def __getitem__(self, name: str) -> SensorChannel:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(channel.name for channel in self.channels)

    def blocks(self) -> list[ReadBlock]:
        """Every channel and status word in as few read requests as possible.

        Registers of one function that follow one another without a gap are one
        request (up to 125 registers); a register between them that the map does
        not name splits them (a sensor may refuse to read it).
        """
        items: dict[tuple[int, int], tuple[int, SensorChannel | None]] = {}
        for channel in self.channels:
            items[(channel.function, channel.register)] = (channel.words, channel)
        for channel in self.channels:
            if channel.status_register is not None:
                items.setdefault((channel.function, channel.status_register), (1, None))
        blocks: list[ReadBlock] = []
        run: list[tuple[int, int, SensorChannel | None]] = []  # (address, words, channel or None: a status word)

        def close_run() -> None:
            if run:
                start, end = run[0][0], run[-1][0] + run[-1][1]
                blocks.append(
                    ReadBlock(
                        function,
                        start,
                        end - start,
                        tuple(c for _, _, c in run if c is not None),
                        tuple(a for a, _, c in run if c is None),
                    )
                )
                run.clear()

        function = 0
        for (item_function, address), (words, channel) in sorted(items.items(), key=lambda item: item[0]):
            if run and (
                item_function != function
                or address != run[-1][0] + run[-1][1]
                or address + words - run[0][0] > MAX_READ_COUNT
            ):
                close_run()
            function = item_function
            run.append((address, words, channel))
        close_run()
        return blocks


# -- the schema ---------------------------------------------------------------------------------

Address = Annotated[int, Field(ge=0, le=_WORD_MAX)]
Number = Annotated[float, Field(ge=-_LIMIT, le=_LIMIT)]
_Units = Annotated[str, Field(min_length=1, max_length=40), NO_CONTROL_CHARACTERS]
_Label40 = Annotated[str, Field(min_length=1, max_length=40), NO_CONTROL_CHARACTERS]
_Label80 = Annotated[str, Field(min_length=1, max_length=80), NO_CONTROL_CHARACTERS]
_Maker = Annotated[str, Field(min_length=0, max_length=80), NO_CONTROL_CHARACTERS]
_MapReference = Annotated[str, Field(min_length=1, max_length=4096), NO_CONTROL_CHARACTERS]
#: A channel name: letters, digits and ``_``, starting with a letter (``pH``, ``flow_L_per_h``).
ChannelName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", min_length=1, max_length=64)]


def _bit_number(value: Any) -> Any:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


Bit = Annotated[int, BeforeValidator(_bit_number), Field(ge=0, le=15)]


class SensorTable(StrictModel):
    """``[sensor]``: which sensors the map is for, and where its facts come from."""

    name: _Label80
    models: Annotated[list[_Label40], Field(min_length=1, max_length=100)]
    maker: _Maker = ""
    description: Description = ""
    source: Description = ""
    verify: Description = ""


with warnings.catch_warnings():  # the field "register" shadows ABCMeta.register, which a table never uses
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class ChannelTable(StrictModel):
        """``[[channel]]``: one quantity the sensor reads."""

        name: ChannelName
        register: Address = Field()  # required: without "= Field()" pydantic would take ABCMeta.register as its default
        function: Literal[3, 4] = 3
        encoding: Literal["int16", "uint16", "int32", "uint32", "float32"]
        word_order: Literal["big", "little"] | None = None
        scale: Number = 1.0
        offset: Number = 0.0
        units: _Units
        valid_min: Number
        valid_max: Number
        status_register: Address | None = None
        fault_bits: dict[Bit, _Label80] = {}
        simulated_default: Number | None = None
        description: Description = ""
        source: Description = ""
        verify: Description = ""

        @model_validator(mode="after")
        def _channel_rules(self):
            words = ENCODINGS[self.encoding]
            if self.word_order is not None and words == 1:
                raise field_error(("word_order",), f"only for 32-bit encodings ({self.encoding} is one register)")
            if self.register + words - 1 > _WORD_MAX:
                raise field_error(("register",), f"{self.register}: its {words} registers go beyond 65535")
            if self.scale == 0:
                raise field_error(("scale",), "must not be 0 (value = raw * scale + offset)")
            if not self.valid_min < self.valid_max:
                raise field_error(("valid_max",), f"{self.valid_max:g} must be above valid_min {self.valid_min:g}")
            if self.status_register is None and self.fault_bits:
                raise field_error(("fault_bits",), "needs status_register (the word these bits are of)")
            if self.status_register is not None and not self.fault_bits:
                raise field_error(("fault_bits",), "status_register needs fault_bits: bit -> what a set bit means")
            if self.simulated_default is not None and not self.valid_min <= self.simulated_default <= self.valid_max:
                raise field_error(("simulated_default",), f"{self.simulated_default:g} is outside valid_min..valid_max")
            return self


class SensorDocument(StrictModel):
    """A sensor map file, with what it ``extends`` laid under it."""

    extends: _MapReference | None = None
    sensor: SensorTable
    channel: Annotated[list[ChannelTable], Field(min_length=1, max_length=64)]


def _rule_problems(doc: SensorDocument) -> list[tuple[str, str]]:
    """The rules between channels of a document whose every field is valid: (field, problem) each."""
    found: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    owner: dict[tuple[int, int], str] = {}  # (function, register) -> what holds it
    for i, channel in enumerate(doc.channel):
        if channel.name in names:
            found.append((f"channel[{i}].name", f"{channel.name!r} is also channel[{names[channel.name]}]"))
        names.setdefault(channel.name, i)
        for address in range(channel.register, channel.register + ENCODINGS[channel.encoding]):
            key = (channel.function, address)
            if key in owner:
                found.append(
                    (f"channel[{i}].register", f"register {address} (FC {channel.function}) is also {owner[key]}")
                )
            owner.setdefault(key, f"channel {channel.name!r}")
    for i, channel in enumerate(doc.channel):
        if channel.status_register is None:
            continue
        holder = owner.get((channel.function, channel.status_register))
        if holder is not None and holder.startswith("channel"):
            found.append(
                (
                    f"channel[{i}].status_register",
                    f"{channel.status_register} (FC {channel.function}) is also a register of {holder}",
                )
            )
    models = doc.sensor.models
    for model in sorted({m for m in models if models.count(m) > 1}):
        found.append(("sensor.models", f"lists {model!r} more than once"))
    return found


# -- finding and loading --------------------------------------------------------------------------


def find_sensor_map(name_or_path: str | os.PathLike) -> Path:
    """A sensor map given as a path to a TOML file or as a bare name in ``hardware/sensors``; else MapError."""
    text = os.fspath(name_or_path)
    candidate = Path(name_or_path)
    try:
        if candidate.suffix == ".toml" and is_regular_file(candidate):
            return candidate
        in_sensors = sensors_dir() / f"{candidate.name.removesuffix('.toml')}.toml"
        if "/" not in text and is_regular_file(in_sensors):
            return in_sensors
    except UnreadableFileError as error:
        raise MapError(f"sensor map {shorten(text)!r}: {error.problem}") from None
    raise MapError(f"no sensor map {shorten(text)!r} (known: {', '.join(known_sensor_maps()) or 'none'})")


def _parent_path(child: Path, name: str) -> Path:
    """The map ``extends = name`` in ``child`` names: a ``.toml`` path relative to the child, or a bare name
    beside the child, then in ``hardware/sensors``."""
    try:
        if name.endswith(".toml"):
            candidate = child.parent / name
            if is_regular_file(candidate):
                return candidate
        elif "/" not in name and name not in ("", ".", ".."):
            for candidate in (child.parent / f"{name}.toml", sensors_dir() / f"{name}.toml"):
                if is_regular_file(candidate):
                    return candidate
    except UnreadableFileError as error:
        raise MapError(f"sensor map {shorten(name)!r}: {error.problem}") from None
    raise MapError(
        f"no sensor map {shorten(name)!r} beside this file or in {shorten(str(sensors_dir()))} "
        f"(known: {', '.join(known_sensor_maps()) or 'none'})"
    )


def _read(path: Path) -> dict:
    try:
        return read_small_toml_file(path)
    except UnreadableFileError as error:
        raise MapError(str(error)) from None


def _merge_channels(parent: list, child: list) -> list:
    """Channels merged by name: the child's channel of a parent's name laid over it, new names appended."""
    merged = [dict(channel) if isinstance(channel, dict) else channel for channel in parent]
    index = {c.get("name"): i for i, c in enumerate(merged) if isinstance(c, dict)}
    for channel in child:
        name = channel.get("name") if isinstance(channel, dict) else None
        if isinstance(channel, dict) and name in index:
            merged[index[name]] = deep_merge(merged[index[name]], channel)
        else:
            merged.append(channel)
    return merged


def _inherit(parent: dict, own: dict) -> dict:
    """A sensor map laid over the map it extends: channels merge by name, ``models`` is never inherited."""
    parent.pop("extends", None)
    if isinstance(parent.get("sensor"), dict):
        parent["sensor"] = {key: value for key, value in parent["sensor"].items() if key not in NOT_INHERITED}
    channels = own.get("channel")
    merged = deep_merge(parent, {key: value for key, value in own.items() if key != "channel"})
    if isinstance(channels, list) and isinstance(parent.get("channel"), list):
        merged["channel"] = _merge_channels(parent["channel"], channels)
    elif channels is not None:
        merged["channel"] = channels
    return merged


def _effective_document(path: Path) -> dict:
    """The content of the sensor map ``path`` with what it extends laid under it (parents checked alone)."""
    return effective_document(
        path, read=_read, find_parent=_parent_path, validate=_validate, inherit=_inherit, kind="sensor map"
    )


def _validate(path: Path, document: dict) -> SensorDocument:
    if "sensor" not in document and "channel" not in document:
        raise MapError.in_file(
            path, [("sensor", "missing table [sensor] and [[channel]]: not a sensor map (docs/instruments/sensors.md)")]
        )
    try:
        checked = SensorDocument.model_validate(document)
    except ValidationError as error:
        raise MapError.in_file(
            path, [_with_allowed(field, problem) for field, problem in problems(error, SensorDocument)]
        ) from None
    found = _rule_problems(checked)
    if found:
        raise MapError.in_file(path, found)
    return checked


def _with_allowed(field: str, problem: str) -> tuple[str, str]:
    """An unknown key of a ``[[channel]]`` table with the keys allowed there (as every other table's has)."""
    if field.startswith("channel[") and "." in field and problem == "unknown key (check the spelling)":
        problem = f"unknown key (check the spelling; allowed: {', '.join(ChannelTable.model_fields)})"
    return field, problem


def _sensor_map(path: Path, doc: SensorDocument) -> SensorMap:
    channels = tuple(
        SensorChannel(
            name=c.name,
            register=c.register,
            function=c.function,
            encoding=c.encoding,
            word_order=c.word_order or "big",
            scale=float(c.scale),
            offset=float(c.offset),
            units=c.units,
            valid_min=float(c.valid_min),
            valid_max=float(c.valid_max),
            status_register=c.status_register,
            fault_bits=MappingProxyType(dict(sorted(c.fault_bits.items()))),
            simulated_default=None if c.simulated_default is None else float(c.simulated_default),
            description=c.description,
            source=c.source,
            verify=c.verify,
        )
        for c in doc.channel
    )
    sensor = doc.sensor
    return SensorMap(
        name=path.stem,
        path=path,
        sensor_name=sensor.name,
        channels=channels,
        models=tuple(sensor.models),
        maker=sensor.maker,
        description=sensor.description,
        source=sensor.source,
        verify=sensor.verify,
    )


def load_sensor_map(name_or_path: str | os.PathLike) -> SensorMap:
    """Load and check a sensor map given by name (``ph-transmitter``, in ``hardware/sensors``) or path."""
    path = find_sensor_map(name_or_path)
    return _sensor_map(path, _validate(path, _effective_document(path)))


def sensor_map_models() -> dict[str, tuple[str, ...] | None]:
    """``{name: models}`` of every sensor map in ``hardware/sensors`` (None for one that does not load)."""
    found: dict[str, tuple[str, ...] | None] = {}
    for name in known_sensor_maps():
        try:
            found[name] = load_sensor_map(name).models
        except MapError:
            found[name] = None
    return found


def resolve_sensor_map(model: str | None = None, sensor_map: str | os.PathLike | SensorMap | None = None) -> SensorMap:
    """The map of a sensor: ``sensor_map`` (a loaded map, a name or a path) if given, else the one map in
    ``hardware/sensors`` whose ``models`` list ``model``. Given both, ``model`` must be one of the map's."""
    if sensor_map is not None:
        loaded = sensor_map if isinstance(sensor_map, SensorMap) else load_sensor_map(sensor_map)
        if model is not None and model not in loaded.models:
            raise MapError(
                f"model {model!r} is not one that sensor map {loaded.name} covers ({', '.join(loaded.models)})"
            )
        return loaded
    if model is None:
        raise ValueError("resolve_sensor_map needs a model or a sensor map")
    available = sensor_map_models()
    covering = [name for name, models in available.items() if models and model in models]
    if len(covering) != 1:
        listing = ", ".join(f"{n} ({', '.join(m) if m else 'does not load'})" for n, m in available.items())
        what = (
            f"several sensor maps cover model {model!r} ({', '.join(covering)}): name one"
            if covering
            else (f"no sensor map covers model {model!r}")
        )
        raise MapError(f"{what}; available sensor maps: {listing or 'none'}")
    return load_sensor_map(covering[0])
