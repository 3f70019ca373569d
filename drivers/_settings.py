"""Declarative instrument settings: one line per property over the driver's protocol layer (decision 0068).

In the style of PyMeasure's ``Instrument.control``: a class attribute states
what a setting is (its command or register, its limits, how it is read back),
and the descriptor does what every such setting does, in the same order every
time. The drivers keep their protocol layer (framing, deadlines, retries); the
descriptors only call it.

- :class:`ScpiSetting`: a setting of a SCPI instrument. Reading sends the
  dialect's ``get_<command>`` and checks the answer; setting checks the type and
  the limits first (``TypeError`` / :class:`~drivers.LimitError`, nothing sent),
  then sends ``set_<command>``, reads the error queue (the instrument's
  ``_check_errors``) and reads the value back (:class:`~drivers.ReadbackMismatch`).
  The value set is remembered and re-applied by :meth:`ScpiSetting.reapply`
  (after a reconnect).
- :class:`ModbusValue`: an analog parameter of a Modbus controller, read-only,
  named by its register (or a function of the register map).
- :class:`ModbusParameter`: a writable one: limits of the station (instrument
  attributes) and of the map's register min/max, checked before anything is
  sent; written and read back by the driver's ``_write_analog``. Its public
  setter is a method made by :meth:`ModbusParameter.setter` (writes to a furnace
  are explicit calls, never assignments).

A limit is a number or the name of an attribute of the instrument (read when the
value is checked, so a station's limits set in ``__init__`` apply). Every
descriptor builds its docstring from what it is given: the sentence of the
property, then units, limits and the errors.

What an instrument must provide: ``_lock``, ``_dialect.command(key, **fields)``,
``_query``, ``_write``, ``_check_errors`` (SCPI); ``register_map``,
``_read_analog``, ``_write_analog`` (Modbus).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._errors import LimitError, ReadbackMismatch

__all__ = ["ScpiSetting", "ModbusValue", "ModbusParameter", "scpi_settings"]

#: A limit: a number, or the name of an attribute of the instrument holding it.
Bound = int | float | str


def _bound(instrument: Any, bound: Bound) -> Any:
    return getattr(instrument, bound) if isinstance(bound, str) else bound


def _bound_text(bound: Bound) -> str:
    return f"``{bound}``" if isinstance(bound, str) else f"{bound:g}"


def _unit_suffix(unit: str) -> str:
    return f" {unit}" if unit else ""


# -- SCPI -----------------------------------------------------------------------------------------


class ScpiSetting:
    """A SCPI setting, one line per property::

        integration_time_s = ScpiSetting("integration_time", "seconds", integration_time_from, unit="s",
                                         low="min_integration_time_s", high="max_integration_time_s", ...)

    ``command`` names the dialect's ``set_<command>`` (with the field ``field``)
    and ``get_<command>``; ``answer`` turns the instrument's answer into a value
    (and raises :class:`~drivers.ProtocolError` for an absurd one). ``integer``:
    the value is an integer compared exactly on read-back; otherwise a real
    number compared within ``relative_tolerance`` of the value or
    ``absolute_tolerance``, whichever is larger. ``what`` names the setting in
    messages (default: ``command`` in words); ``unit`` follows numbers in them.

    The instrument keeps the last value read or set in ``_<name>`` and the value
    set through the driver in ``_wanted_<name>`` (``None`` until one is set).
    """

    def __init__(
        self,
        command: str,
        field: str,
        answer: Callable[[str], Any],
        *,
        doc: str,
        low: Bound,
        high: Bound,
        integer: bool = False,
        unit: str = "",
        what: str | None = None,
        relative_tolerance: float = 0.0,
        absolute_tolerance: float = 0.0,
    ) -> None:
        self.command, self.field, self.answer = command, field, answer
        self.get_key, self.set_key = f"get_{command}", f"set_{command}"
        self.low, self.high = low, high
        self.integer, self.unit = integer, unit
        self.what = what or command.replace("_", " ")
        self.relative_tolerance, self.absolute_tolerance = relative_tolerance, absolute_tolerance
        self.doc = doc
        self.name = command
        self.cache = self.wanted = ""
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.cache, self.wanted = f"_{name}", f"_wanted_{name}"
        self.__doc__ = self._build_doc()

    def _build_doc(self) -> str:
        kind = "an integer" if self.integer else "a number"
        unit = f" ({self.unit})" if self.unit else ""
        if self.integer:
            readback = "it must read back exactly"
        else:
            readback = (
                f"it must read back within {self.relative_tolerance:.3g} x the value or "
                f"{self.absolute_tolerance:g}{_unit_suffix(self.unit)}, whichever is larger"
            )
        return (
            f"{self.doc}\n\n"
            f"Reading asks the instrument (the dialect's ``{self.get_key}``); an absurd answer is a "
            f"ProtocolError (``{getattr(self.answer, '__name__', 'answer')}``).\n"
            f"Setting: {kind} within {_bound_text(self.low)}..{_bound_text(self.high)}{unit}, checked "
            f"before anything is sent (TypeError for another type, LimitError outside the limits); then "
            f"``{self.set_key}``, the error queue (ScpiError) and a read-back with ``{self.get_key}``: "
            f"{readback} (ReadbackMismatch). Re-applied on reconnect."
        )

    # -- descriptor protocol -----------------------------------------------------------------
    def __get__(self, instrument: Any, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        return self.read(instrument)

    def __set__(self, instrument: Any, value: Any) -> None:
        checked = self.check(instrument, value)
        with instrument._lock:
            self.apply(instrument, checked)
            setattr(instrument, self.wanted, checked)

    # -- the steps ---------------------------------------------------------------------------
    def read(self, instrument: Any) -> Any:
        """Ask the instrument; the checked answer is also kept as the last known value."""
        with instrument._lock:
            value = self.answer(instrument._query(instrument._dialect.command(self.get_key)))
            setattr(instrument, self.cache, value)
            return value

    def check(self, instrument: Any, value: Any) -> Any:
        """``value`` as it will be sent; TypeError or LimitError (nothing sent) if it cannot be."""
        low, high = _bound(instrument, self.low), _bound(instrument, self.high)
        if self.integer:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{self.name} must be an integer, got {value!r}")
            if not low <= value <= high:
                raise LimitError(f"{self.what} must be within {low}-{high}, got {value}; nothing sent")
            return int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self.name} must be a number, got {value!r}")
        number = float(value)
        if not (math.isfinite(number) and low <= number <= high):
            unit = _unit_suffix(self.unit)
            raise LimitError(f"{self.what} {value!r}{unit} outside the limits {low:g}-{high:g}{unit}; nothing sent")
        return number

    def apply(self, instrument: Any, value: Any) -> None:
        """Send a checked value, read the error queue, read it back and compare (caller holds the lock)."""
        command = instrument._dialect.command(self.set_key, **{self.field: value})
        instrument._write(command)
        instrument._check_errors(command)
        readback = self.answer(instrument._query(instrument._dialect.command(self.get_key)))
        if self.integer:
            if readback != value:
                raise ReadbackMismatch(f"{self.what} set to {value}, instrument reads back {readback}")
        elif abs(readback - value) > max(self.absolute_tolerance, self.relative_tolerance * value):
            unit = _unit_suffix(self.unit)
            raise ReadbackMismatch(f"{self.what} set to {value:g}{unit}, instrument reads back {readback:g}{unit}")
        setattr(instrument, self.cache, readback)

    def reapply(self, instrument: Any) -> None:
        """Apply again the value set through the driver, if any (after a reconnect)."""
        wanted = getattr(instrument, self.wanted, None)
        if wanted is not None:
            self.apply(instrument, wanted)


def scpi_settings(cls: type) -> tuple[ScpiSetting, ...]:
    """The :class:`ScpiSetting` s of a driver class, in the order they are defined (base classes first)."""
    found: dict[str, ScpiSetting] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, ScpiSetting):
                found.pop(name, None)
                found[name] = value
    return tuple(found.values())


# -- Modbus ---------------------------------------------------------------------------------------


class ModbusValue:
    """A read-only analog parameter of a Modbus controller, named by its register (or a function of the map).

    Read by the driver's ``_read_analog`` (with its poll block if it has one);
    an answer outside the register's min..max in the map is refused and read
    again. Assigning to it is an AttributeError (it used to shadow the value).
    """

    def __init__(self, register: str | Callable[[Any], str], doc: str) -> None:
        self.register, self.doc = register, doc
        self.name = register if isinstance(register, str) else "value"
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.__doc__ = self._build_doc()

    def _register_text(self) -> str:
        return f"register ``{self.register}``" if isinstance(self.register, str) else "the register the map names"

    def _build_doc(self) -> str:
        return (
            f"{self.doc}\n\nRead-only: {self._register_text()}, decoded as the map says; a value outside "
            "the register's min..max in the map is refused and read again."
        )

    def register_of(self, instrument: Any):
        """The :class:`~drivers._register_map.Register` of this parameter in the instrument's map."""
        register_map = instrument.register_map
        name = self.register if isinstance(self.register, str) else self.register(register_map)
        return register_map[name]

    def __get__(self, instrument: Any, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        return instrument._read_analog(self.register_of(instrument))

    def __set__(self, instrument: Any, value: Any) -> None:
        raise AttributeError(f"{self.name} is read-only")


class ModbusParameter(ModbusValue):
    """A writable analog parameter: limits first (nothing sent), then write and read back.

    ``low``/``high`` are the station's limits (numbers or instrument attribute
    names), narrowed by the register's min..max from the map. ``off``: a value
    that switches the parameter off (a rate limit's 0); it lies at the low end
    and is accepted only when the station's ``high`` is infinite, since "off"
    lifts the limit (``off_allows`` says what it would allow, for the message).
    ``what`` names the parameter in messages, ``unit`` follows its numbers.
    """

    def __init__(
        self,
        register: str | Callable[[Any], str],
        doc: str,
        *,
        what: str,
        unit: str = "",
        low: Bound | None = None,
        high: Bound | None = None,
        off: float | None = None,
        off_allows: str = "values",
    ) -> None:
        super().__init__(register, doc)
        self.what, self.unit = what, unit
        self.low, self.high, self.off, self.off_allows = low, high, off, off_allows
        self.setter_name = ""
        self._setter_function: Callable[..., None] | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        super().__set_name__(owner, name)
        if self._setter_function is not None:
            self._setter_function.__qualname__ = f"{owner.__qualname__}.{self.setter_name}"

    def _limits_text(self) -> str:
        unit = _unit_suffix(self.unit)
        if self.low is not None and self.high is not None:
            station = f"within {_bound_text(self.low)}..{_bound_text(self.high)}{unit} and "
        elif self.high is not None:
            station = f"at most {_bound_text(self.high)}{unit} and "
        elif self.low is not None:
            station = f"at least {_bound_text(self.low)}{unit} and "
        else:
            station = ""
        text = f"a finite value {station}within the register's min..max in the map"
        if self.off is not None:
            text += (
                f"; {self.off:g} (off) only when {_bound_text(self.high) if self.high is not None else 'it'} "
                "is infinite"
            )
        return text + ", else LimitError and nothing is sent"

    def _build_doc(self) -> str:
        how = f"written by :meth:`{self.setter_name}`" if self.setter_name else "written by the driver"
        return (
            f"{self.doc}\n\n{self._register_text().capitalize()}, {how}: {self._limits_text()}; "
            "every write is read back at the instrument's resolution (ReadbackMismatch)."
        )

    def __set__(self, instrument: Any, value: Any) -> None:
        hint = f"; call {self.setter_name}()" if self.setter_name else ""
        raise AttributeError(f"{self.name} is not set by assignment{hint}")

    def limits(self, instrument: Any, register) -> tuple[float, float]:
        """``(low, high)``: the station's limits narrowed by the register's min..max."""
        low = -math.inf if self.low is None else _bound(instrument, self.low)
        high = math.inf if self.high is None else _bound(instrument, self.high)
        if register.minimum is not None:
            low = max(low, register.minimum)
        if register.maximum is not None:
            high = min(high, register.maximum)
        return low, high

    def check(self, instrument: Any, value: Any):
        """``(register, value)`` to write; LimitError (nothing sent) if the value is outside the limits."""
        register = self.register_of(instrument)
        number = float(value)
        low, high = self.limits(instrument, register)
        unit = _unit_suffix(self.unit)
        if self.off is None:
            if not math.isfinite(number) or not low <= number <= high:
                raise LimitError(f"{self.what} {value!r}{unit} is outside {low:g}..{high:g}{unit}; nothing was sent")
            return register, number
        station_high = math.inf if self.high is None else _bound(instrument, self.high)
        if not math.isfinite(number) or number < low:
            raise LimitError(f"{self.what} {value!r}{unit} is not a finite value >= {low:g}; nothing was sent")
        if number == self.off and math.isfinite(station_high):
            raise LimitError(
                f"{self.what} {self.off:g} (off) would allow {self.off_allows} above "
                f"{station_high:g}{unit}; nothing was sent"
            )
        if number > high:
            raise LimitError(f"{self.what} {number:g}{unit} is above the limit {high:g}{unit}; nothing was sent")
        return register, number

    def write(self, instrument: Any, register, value: float) -> None:
        """Write a checked value and read it back (the driver's ``_write_analog``)."""
        instrument._write_analog(register, value)

    def set(self, instrument: Any, value: Any) -> None:
        """Check, write, read back."""
        register, number = self.check(instrument, value)
        self.write(instrument, register, number)

    def setter(self, name: str, parameter: str, doc: str = "") -> Callable[..., None]:
        """The public method ``name(value)`` that sets this parameter (``parameter``: its argument's name)."""
        descriptor = self
        signature = inspect.Signature(
            [
                inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                inspect.Parameter(parameter, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=float),
            ],
            return_annotation=None,
        )

        def set_parameter(instrument, *args, **kwargs) -> None:
            value = signature.bind(instrument, *args, **kwargs).arguments[parameter]
            descriptor.set(instrument, value)

        self.setter_name = name
        self.__doc__ = self._build_doc()
        unit = f", {self.unit}" if self.unit else ""
        set_parameter.__name__ = name
        set_parameter.__qualname__ = name
        set_parameter.__signature__ = signature  # type: ignore[attr-defined]
        self._setter_function = set_parameter
        set_parameter.__doc__ = (
            f"Set the {self.what}{unit} ({self._register_text()}), and read it back.\n\n"
            f"Accepted: {self._limits_text()}." + (f" {doc}" if doc else "")
        )
        return set_parameter
