"""`remdaq calibrate`: measure a set of standards and write a calibration with its quality report.

On the simulated bench each standard is loaded into the simulated cell; on a real
bench the operator is asked to fill the cell with each standard in turn.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

import analysis

from ._config_fields import count, field_error, number, text
from .bench import open_bench
from .config import MAX_INTEGRATION_TIME_S, ConfigError, Element, SpectrometerConfig, Station, load_toml_model

__all__ = [
    "StandardsSet",
    "Standard",
    "load_standards",
    "check_standards_against_station",
    "station_spectrometer",
    "measure_standards",
    "calibrate_station",
]

#: Highest concentration of one element in a standard, g/L (far above any aqueous rare-earth solution).
MAX_STANDARD_G_PER_L = 1000.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Standard(_Strict):
    """One calibration standard: a name and its element concentrations in g/L."""

    name: Annotated[str, text(min_length=1, max_length=200)]
    concentrations_g_per_L: dict[Element, Annotated[float, number(ge=0, le=MAX_STANDARD_G_PER_L)]]


class StandardsSet(_Strict):
    """A set of standards and how to measure them."""

    title: Annotated[str, text(max_length=200)] = ""
    analytes: Annotated[list[Element], Field(min_length=1, max_length=len(analysis.RARE_EARTHS))]
    integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)]
    averages: Annotated[int, count(ge=1, le=10000)] = 1
    replicates: Annotated[int, count(ge=1, le=100)] = 1
    baseline_order: Annotated[int, count(ge=0, le=5)] | None = 2
    quadratic: Annotated[
        list[Element],
        Field(
            max_length=len(analysis.RARE_EARTHS),
            description="analytes whose strong bands need a curvature term (e.g. Nd)",
        ),
    ] = []
    standards: Annotated[list[Standard], Field(max_length=1000)]
    source: Path = Path("<memory>")

    @model_validator(mode="after")
    def _consistent(self):
        if len(set(self.analytes)) != len(self.analytes):
            raise field_error(("analytes",), f"repeats an element: {self.analytes}")
        names = [s.name for s in self.standards]
        if len(set(names)) != len(names):
            raise field_error(("standards",), f"standard names repeat: {names}")
        for index, standard in enumerate(self.standards):
            extra = set(standard.concentrations_g_per_L) - set(self.analytes)
            if extra:
                raise field_error(
                    ("standards", index, "concentrations_g_per_L"),
                    f"standard {standard.name!r} contains {sorted(extra)}, which are not among "
                    f"analytes {self.analytes} (standards.analytes)",
                )
        if len(set(self.quadratic)) != len(self.quadratic):
            raise field_error(("quadratic",), f"repeats an element: {self.quadratic}")
        if set(self.quadratic) - set(self.analytes):
            raise field_error(
                ("quadratic",),
                f"{self.quadratic} names elements that are not among analytes {self.analytes} (standards.analytes)",
            )
        if len(self.standards) < len(self.analytes) + 1:
            raise field_error(
                ("standards",),
                f"{len(self.standards)} standards for {len(self.analytes)} analytes: at least "
                f"{len(self.analytes) + 1} are needed (standards.analytes)",
            )
        return self

    def concentration_matrix(self) -> np.ndarray:
        """(standards, analytes) g/L, zeros where a standard lacks an analyte."""
        return np.array([[s.concentrations_g_per_L.get(a, 0.0) for a in self.analytes] for s in self.standards])


def load_standards(path: str | os.PathLike) -> StandardsSet:
    """Read and validate a standards file (``seeds/standards/*.toml``)."""
    return load_toml_model(
        path, StandardsSet, "standards", "analytes, integration_time_s, ...", {"standard": "standards"}
    )


def station_spectrometer(station: Station, name: str | None = None, purpose: str = "calibrate") -> SpectrometerConfig:
    """The spectrometer of ``station`` called ``name`` (default: its first); a ConfigError when there is none."""
    if name is None:
        if station.spectrometer is None:
            raise ConfigError(station.source, [f"spectrometer: the station has no spectrometer to {purpose}"])
        return station.spectrometer
    found = next((s for s in station.spectrometers if s.name == name), None)
    if found is None:
        names = ", ".join(s.name for s in station.spectrometers) or "none"
        raise ConfigError(station.source, [f"--spectrometer: the station has no spectrometer {name!r} ({names})"])
    return found


def check_standards_against_station(standards: StandardsSet, station: Station, spectrometer: str | None = None) -> None:
    """Refuse standards the station's spectrometer cannot measure (none; integration time or averages out of range)."""
    problems = station_spectrometer(station, spectrometer).setting_problems(
        "standards", standards.integration_time_s, {"averages": standards.averages}, station.source
    )
    if problems:
        raise ConfigError(standards.source, problems)


def measure_standards(
    spectrometer, cell, standards: StandardsSet, progress: Callable[[str], None] = lambda _message: None
):
    """Dark, blank reference, then each standard ``replicates`` times; returns (wavelength, absorbance, conc, names)."""
    spectrometer.integration_time_s = standards.integration_time_s
    spectrometer.averages = standards.averages
    saturation = float(spectrometer.full_scale_counts)
    cell.load_blank()
    dark = spectrometer.dark()
    reference = spectrometer.acquire()
    saturated = int(np.count_nonzero(reference >= saturation))
    if saturated > reference.size // 10:
        raise ValueError(
            f"blank reference has {saturated} of {reference.size} pixels saturated at "
            f"{standards.integration_time_s:g} s: lower integration_time_s in {standards.source}"
        )
    rows, concentrations, names = [], [], []
    matrix = standards.concentration_matrix()
    for index, standard in enumerate(standards.standards):
        progress(f"standard {index + 1}/{len(standards.standards)}: {standard.name}")
        cell.load_standard(standard.name, standard.concentrations_g_per_L)
        for replicate in range(standards.replicates):
            counts = spectrometer.acquire()
            rows.append(analysis.absorbance(counts, dark, reference, saturation_counts=saturation))
            concentrations.append(matrix[index])
            names.append(standard.name if standards.replicates == 1 else f"{standard.name}#{replicate + 1}")
    cell.load_blank()
    return (np.asarray(spectrometer.wavelengths_nm, dtype=float), np.array(rows), np.array(concentrations), names)


def calibrate_station(
    station: Station,
    standards: StandardsSet,
    out: Path,
    progress: Callable[[str], None] = lambda _message: None,
    spectrometer: str | None = None,
):
    """Measure ``standards`` on a spectrometer of the station (default: its first) and save the calibration."""
    config = station_spectrometer(station, spectrometer)
    check_standards_against_station(standards, station, config.name)
    if out.exists():
        raise ConfigError(
            out, ["a calibration file of that name exists; choose another --out (calibrations are never overwritten)"]
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_bench(station, names=(config.name,)) as bench:
        cell = bench.cell(spectrometer=config.name)
        wavelength_nm, absorbance, concentration, names = measure_standards(
            bench.spectrometers[config.name], cell, standards, progress
        )
    calibration = analysis.calibrate(
        wavelength_nm,
        absorbance,
        concentration,
        standards.analytes,
        baseline_order=standards.baseline_order,
        standard_names=names,
        quadratic=tuple(standards.quadratic),
    )
    calibration.save(out)
    return calibration
