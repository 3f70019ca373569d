"""`remdaq calibrate`: measure a set of standards and write a calibration with its quality report.

On the simulated bench each standard is loaded into the simulated cell; on a real
bench the operator is asked to fill the cell with each standard in turn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

import analysis

from .bench import open_bench
from .cell import OperatorCell, SimulatedCell
from .config import ConfigError, Element, Station, load_toml_model

__all__ = ["StandardsSet", "Standard", "load_standards", "measure_standards", "calibrate_station"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Standard(_Strict):
    """One calibration standard: a name and its element concentrations in g/L."""

    name: str
    concentrations_g_per_L: dict[Element, Annotated[float, Field(ge=0)]]  # type: ignore[valid-type]


class StandardsSet(_Strict):
    """A set of standards and how to measure them."""

    title: str = ""
    analytes: Annotated[list[Element], Field(min_length=1)]  # type: ignore[valid-type]
    integration_time_s: Annotated[float, Field(gt=0)]
    averages: Annotated[int, Field(ge=1)] = 1
    replicates: Annotated[int, Field(ge=1, le=100)] = 1
    baseline_order: Annotated[int, Field(ge=0, le=5)] | None = 2
    quadratic: list[Element] = Field(  # type: ignore[valid-type]
        default_factory=list, description="analytes whose strong bands need a curvature term (e.g. Nd)")
    standards: list[Standard]
    source: Path = Path("<memory>")

    @model_validator(mode="after")
    def _consistent(self):
        names = [s.name for s in self.standards]
        if len(set(names)) != len(names):
            raise ValueError(f"standard names repeat: {names}")
        for standard in self.standards:
            extra = set(standard.concentrations_g_per_L) - set(self.analytes)
            if extra:
                raise ValueError(f"standard {standard.name!r} contains {sorted(extra)}, which are not among "
                                 f"analytes {self.analytes}")
        if set(self.quadratic) - set(self.analytes):
            raise ValueError(f"quadratic {self.quadratic} names elements that are not among analytes {self.analytes}")
        if len(self.standards) < len(self.analytes) + 1:
            raise ValueError(f"{len(self.standards)} standards for {len(self.analytes)} analytes: "
                             f"at least {len(self.analytes) + 1} are needed")
        return self

    def concentration_matrix(self) -> np.ndarray:
        """(standards, analytes) g/L, zeros where a standard lacks an analyte."""
        return np.array([[s.concentrations_g_per_L.get(a, 0.0) for a in self.analytes] for s in self.standards])


def load_standards(path: str | os.PathLike) -> StandardsSet:
    """Read and validate a standards file (``seeds/standards/*.toml``)."""
    return load_toml_model(path, StandardsSet, "standards", "analytes, integration_time_s, ...",
                           {"standard": "standards"})


def measure_standards(spectrometer, cell, standards: StandardsSet,
                      progress: Callable[[str], None] = lambda _message: None):
    """Dark, blank reference, then each standard ``replicates`` times; returns (wavelength, absorbance, conc, names)."""
    spectrometer.integration_time_s = standards.integration_time_s
    spectrometer.averages = standards.averages
    saturation = float(spectrometer.full_scale_counts)
    cell.load_blank()
    dark = spectrometer.dark()
    reference = spectrometer.acquire()
    saturated = int(np.count_nonzero(reference >= saturation))
    if saturated > reference.size // 10:
        raise ValueError(f"blank reference has {saturated} of {reference.size} pixels saturated at "
                         f"{standards.integration_time_s:g} s: lower integration_time_s in {standards.source}")
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


def calibrate_station(station: Station, standards: StandardsSet, out: Path,
                      progress: Callable[[str], None] = lambda _message: None):
    """Measure ``standards`` on the station's spectrometer and save the calibration to ``out``."""
    if station.spectrometer is None:
        raise ConfigError(station.source, ["spectrometer: the station has no spectrometer to calibrate"])
    limits = station.spectrometer
    if not limits.min_integration_time_s <= standards.integration_time_s <= limits.max_integration_time_s:
        raise ConfigError(standards.source, [
            f"standards.integration_time_s: {standards.integration_time_s:g} s is outside the station's range "
            f"{limits.min_integration_time_s:g}-{limits.max_integration_time_s:g} s ({station.source})"])
    if out.exists():
        raise ConfigError(out, ["a calibration file of that name exists; choose another --out "
                                "(calibrations are never overwritten)"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_bench(station, instruments=("spectrometer",)) as bench:
        spectrometer = bench.spectrometer
        cell = SimulatedCell(spectrometer, scenario_loaded=False) if limits.simulated else OperatorCell()
        wavelength_nm, absorbance, concentration, names = measure_standards(spectrometer, cell, standards, progress)
    calibration = analysis.calibrate(wavelength_nm, absorbance, concentration, standards.analytes,
                                     baseline_order=standards.baseline_order, standard_names=names,
                                     quadratic=tuple(standards.quadratic))
    calibration.save(out)
    return calibration
