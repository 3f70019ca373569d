"""Check-standard files (``seeds/standards/check/*.toml``): one standard of stated concentrations, for `remdaq check`.

The format follows the calibration standards files (``seeds/standards/*.toml``,
:mod:`daq.calibration_run`): a main table with how to measure, and the standard
as the calibration files write one (``name``, ``concentrations_g_per_L`` in g/L
of element), plus what the certificate says of its uncertainty::

    [check]
    title = "Nd 10 / Pr 2 g/L check standard"
    integration_time_s = 0.02
    averages = 1000
    replicates = 3

    [standard]
    name = "check-nd-pr"
    concentrations_g_per_L = { Nd = 10.0, Pr = 2.0 }
    uncertainty_g_per_L = { Nd = 0.02, Pr = 0.006 }   # or: certified_relative_uncertainty = 0.002
    coverage_factor = 1                               # k of the stated uncertainties (2 for an expanded U)

Every problem is a :class:`daq.config.ConfigError` naming the file and the key
(``standard.uncertainty_g_per_L: ...``), as for station, recipe and standards files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from ._config_fields import count, field_error, number, text
from .calibration_run import MAX_STANDARD_G_PER_L, Standard, station_spectrometer
from .config import MAX_INTEGRATION_TIME_S, ConfigError, Element, SpectrometerConfig, Station, load_toml_model

__all__ = [
    "CheckStandard",
    "CheckStandardFile",
    "load_check_standard",
    "check_standard_against_station",
    "check_standard_against_calibration",
    "checked_spectrometer",
    "MAX_RELATIVE_UNCERTAINTY",
]

#: Largest relative standard uncertainty accepted for a check standard (50 %: no longer a check).
MAX_RELATIVE_UNCERTAINTY = 0.5


class CheckStandard(Standard):
    """The check standard: its name, stated concentrations (g/L of element) and their uncertainty."""

    uncertainty_g_per_L: dict[Element, Annotated[float, number(ge=0, le=MAX_STANDARD_G_PER_L)]] | None = None
    certified_relative_uncertainty: Annotated[float, number(ge=0, le=MAX_RELATIVE_UNCERTAINTY)] | None = None
    coverage_factor: Annotated[float, number(ge=1, le=3)] = 1.0

    @model_validator(mode="after")
    def _stated_and_uncertain(self):
        if not self.concentrations_g_per_L:
            raise field_error(
                ("concentrations_g_per_L",),
                "states no element; a check standard needs at least one, e.g. { Nd = 10.0, Pr = 2.0 }",
            )
        if not any(value > 0 for value in self.concentrations_g_per_L.values()):
            raise field_error(
                ("concentrations_g_per_L",),
                "every element is 0 g/L; a check standard needs at least one element above 0",
            )
        absolute, relative = self.uncertainty_g_per_L, self.certified_relative_uncertainty
        if absolute is None and relative is None:
            raise field_error(
                ("uncertainty_g_per_L",),
                "missing: state the uncertainty of the concentrations, as "
                "uncertainty_g_per_L = { El = g/L, ... } or "
                "certified_relative_uncertainty = 0.002",
            )
        if absolute is not None and relative is not None:
            raise field_error(
                ("certified_relative_uncertainty",),
                "give uncertainty_g_per_L or certified_relative_uncertainty, not both",
            )
        if absolute is not None:
            missing = sorted(set(self.concentrations_g_per_L) - set(absolute))
            extra = sorted(set(absolute) - set(self.concentrations_g_per_L))
            if missing:
                raise field_error(
                    ("uncertainty_g_per_L",), f"has no value for {missing}, which concentrations_g_per_L states"
                )
            if extra:
                raise field_error(
                    ("uncertainty_g_per_L",), f"gives {extra}, which concentrations_g_per_L does not state"
                )
        return self

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(self.concentrations_g_per_L)

    def stated_g_per_L(self) -> np.ndarray:
        """(E,) the stated concentrations, in the order of :attr:`elements`."""
        return np.array([self.concentrations_g_per_L[el] for el in self.elements], dtype=float)

    def standard_uncertainty_g_per_L(self) -> np.ndarray:
        """(E,) standard uncertainties (k = 1) of the stated concentrations: stated ones over the coverage factor."""
        if self.uncertainty_g_per_L is not None:
            stated = np.array([self.uncertainty_g_per_L[el] for el in self.elements], dtype=float)
        else:
            stated = self.certified_relative_uncertainty * self.stated_g_per_L()
        return stated / self.coverage_factor


class CheckStandardFile(BaseModel):
    """A check-standard file: how to measure (``[check]``) and the standard (``[standard]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Annotated[str, text(max_length=200)] = ""
    integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)]
    averages: Annotated[int, count(ge=1, le=10000)] = 1
    replicates: Annotated[int, count(ge=1, le=100)] = 3
    standard: CheckStandard
    source: Path = Path("<memory>")


def load_check_standard(path: str | os.PathLike) -> CheckStandardFile:
    """Read and validate a check-standard file (``seeds/standards/check/*.toml``)."""
    return load_toml_model(
        path, CheckStandardFile, "check", "integration_time_s, averages, replicates", {"standard": "standard"}
    )


def checked_spectrometer(station: Station) -> SpectrometerConfig:
    """The station's (first) spectrometer; :class:`ConfigError` if it has none to check a calibration on."""
    return station_spectrometer(station, purpose="check a calibration on")


def check_standard_against_station(check: CheckStandardFile, station: Station) -> None:
    """Refuse a check the station's spectrometer cannot measure (none; integration time or averages out of range)."""
    problems = checked_spectrometer(station).setting_problems(
        "check", check.integration_time_s, {"averages": check.averages}, station.source
    )
    if problems:
        raise ConfigError(check.source, problems)


def check_standard_against_calibration(check: CheckStandardFile, analytes, calibration_path) -> None:
    """Refuse a standard that states an element the calibration does not quantify."""
    missing = [el for el in check.standard.elements if el not in analytes]
    if missing:
        raise ConfigError(
            check.source,
            [
                f"standard.concentrations_g_per_L: {', '.join(missing)} not among the analytes of calibration "
                f"{calibration_path} ({', '.join(analytes)}): check with a calibration that covers "
                f"{', '.join(check.standard.elements)}, or a standard of its analytes"
            ],
        )
