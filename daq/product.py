"""The product certificate of a trial: ICP results, loss on ignition, and how they agree with the live purity.

A *results file* (TOML, entered by the lab; :func:`load_results`) names the ICP export, the product's sample
id in it, the digestion (for solution units) and the crucible masses of the loss on ignition.
:func:`write_product` computes the certificate and writes the *product file* beside the trial,
``<trial>.product.json`` (docs/results.md is its contract): it links the trial id and the raw trial file's
checksum (the reanalysis checksum, :func:`daq.reanalysis.raw_checksum`, docs/decisions/0062), keeps the
results and ICP files' texts, and is written under a temporary name and renamed when complete. The raw
trial file is only read.

Agreement rule (docs/decisions/0083): the live UV-Vis purity at the end of the trial (the mean of its last
:data:`END_ROWS` analysed spectra without a flag) and the ICP purity over the same elements are consistent
when ``|live - ICP| <= 2 * sqrt(u_live^2 + u_ICP^2)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import model_validator

from analysis import RARE_EARTHS, element, oxide_purity

from ._common import software_version, utc_now_iso
from ._config_fields import FilePath, field_error, number, text
from .config import ConfigError, load_toml_model
from .icp import Digestion, IcpElement, IcpResults, _Strict, read_icp_csv
from .reader import TrialReader, open_trial

__all__ = [
    "AGREEMENT_SIGMAS",
    "CONTROL_SIGMAS",
    "END_ROWS",
    "PRODUCT_FORMAT",
    "PRODUCT_SUFFIX",
    "Agreement",
    "BiasChart",
    "Certificate",
    "LivePurity",
    "LossOnIgnition",
    "Product",
    "ProductError",
    "ResultsFile",
    "agreement",
    "bias_chart",
    "build_product_data",
    "certificate",
    "live_end_purity",
    "load_results",
    "product_path",
    "product_points",
    "read_product",
    "write_product",
]

PRODUCT_FORMAT = "rem-daq product 1"
PRODUCT_SUFFIX = ".product.json"
END_ROWS = 5
"""The live purity at the end of a trial is the mean of this many last analysed spectra without a flag."""
AGREEMENT_SIGMAS = 2.0
"""Live and ICP purity are consistent when they differ by at most this many combined standard uncertainties."""
CONTROL_SIGMAS = 3.0
"""Control limits of the bias chart: centre line +- this many sigma (individuals chart, sigma from moving ranges)."""
_D2 = 1.128  # E[moving range of 2] / sigma for a normal distribution (the individuals chart's d2)


class ProductError(ValueError):
    """A product cannot be made or read; the message says what and where."""


# -- the results file ------------------------------------------------------------------------------


class LossOnIgnition(_Strict):
    """Crucible weighings of the loss on ignition (g): empty, with the sample, after ignition."""

    crucible_g: Annotated[float, number(gt=0, le=10000)]
    crucible_and_sample_g: Annotated[float, number(gt=0, le=10000)]
    crucible_and_ignited_g: Annotated[float, number(gt=0, le=10000)]
    temperature_C: Annotated[float, number(gt=0, le=1700)] = 900.0
    duration_h: Annotated[float, number(gt=0, le=1000)] = 2.0
    balance_sigma_g: Annotated[float, number(gt=0, le=1)] = 0.0001
    """Standard uncertainty of one weighing (a 0.1 mg analytical balance by default)."""

    @model_validator(mode="after")
    def _masses(self) -> LossOnIgnition:
        if self.crucible_and_sample_g <= self.crucible_g:
            raise field_error(
                ("crucible_and_sample_g",),
                f"{self.crucible_and_sample_g} g is not more than the empty crucible's {self.crucible_g} g",
            )
        if self.crucible_and_ignited_g > self.crucible_and_sample_g:
            raise field_error(
                ("crucible_and_ignited_g",),
                f"{self.crucible_and_ignited_g} g is more than before ignition ({self.crucible_and_sample_g} g): "
                "a gain on ignition (swap of the two weighings?)",
            )
        if self.crucible_and_ignited_g < self.crucible_g:
            raise field_error(
                ("crucible_and_ignited_g",),
                f"{self.crucible_and_ignited_g} g is less than the empty crucible ({self.crucible_g} g)",
            )
        return self

    @property
    def sample_g(self) -> float:
        return self.crucible_and_sample_g - self.crucible_g

    @property
    def loss_g(self) -> float:
        return self.crucible_and_sample_g - self.crucible_and_ignited_g

    @property
    def percent(self) -> float:
        """Loss on ignition, % of the sample's mass before ignition."""
        return 100.0 * self.loss_g / self.sample_g

    @property
    def sigma_percent(self) -> float:
        """Standard uncertainty of :attr:`percent` from the three weighings (independent)."""
        b, a, c = self.crucible_and_sample_g, self.crucible_and_ignited_g, self.crucible_g
        d_b, d_a, d_c = (a - c) / (b - c) ** 2, -1.0 / (b - c), (b - a) / (b - c) ** 2
        return 100.0 * self.balance_sigma_g * math.sqrt(d_b**2 + d_a**2 + d_c**2)


class ResultsFile(_Strict):
    """A results TOML file: ``[results]`` with ``[digestion]`` and ``[loi]`` tables (docs/results.md)."""

    icp_file: FilePath
    sample_id: Annotated[str, text(min_length=1, max_length=200)] | None = None
    mapping: FilePath | None = None
    method: Annotated[str, text(max_length=300)] = ""
    laboratory: Annotated[str, text(max_length=200)] = ""
    analyst: Annotated[str, text(max_length=200)] = ""
    analysed_on: Annotated[str, text(max_length=40)] = ""
    notes: Annotated[str, text(max_length=4000, multiline=True)] = ""
    digestion: Digestion | None = None
    loi: LossOnIgnition | None = None
    source: Path

    def resolve(self, path: Path) -> Path:
        """A path of the file, relative to the results file's folder."""
        return path if path.is_absolute() else self.source.parent / path


def load_results(path: str | os.PathLike) -> ResultsFile:
    """Read and validate a results file (:class:`daq.ConfigError` naming file and field)."""
    results = load_toml_model(
        path, ResultsFile, "results", "icp_file, sample_id, ...", {"digestion": "digestion", "loi": "loi"}
    )
    problems = []
    for name, value in (("icp_file", results.icp_file), ("mapping", results.mapping)):
        if value is not None and not results.resolve(value).is_file():
            problems.append(f"results.{name}: no such file {results.resolve(value)}")
    if problems:
        raise ConfigError(results.source, problems)
    return results


# -- the certificate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """What the ICP results and the loss on ignition say about the product (mass fractions of the solid)."""

    target: str
    target_oxide: str
    rare_earths: tuple[IcpElement, ...]
    impurities: tuple[IcpElement, ...]
    treo_mg_per_kg: float
    treo_sigma_mg_per_kg: float
    purity: float  # target oxide / TREO (mass fraction, 0..1)
    purity_sigma: float
    purity_lower_bound: float  # with every rare earth below its detection limit at the limit
    non_ree_oxides_mg_per_kg: float
    loi: LossOnIgnition | None

    @property
    def treo_percent(self) -> float:
        return self.treo_mg_per_kg / 1e4

    def purity_over(self, elements: Iterable[str]) -> tuple[float, float, tuple[str, ...]]:
        """(purity, sigma, elements used) of the target oxide over the oxides of ``elements`` only (those in
        the ICP results), the basis a live UV-Vis purity has."""
        wanted = set(elements)
        chosen = tuple(e for e in self.rare_earths if e.element in wanted)
        result = _purity(chosen, self.target)
        return float(result.purity[0]), float(result.purity_sigma[0]), tuple(e.element for e in chosen)


def _purity(elements: Sequence[IcpElement], target: str):
    """:func:`analysis.oxide_purity` on mass fractions (mg/kg; the ratio does not care for the unit).

    An element below its detection limit enters as 0 with its limit (censored, as analysis.purity's policy),
    with a standard uncertainty of a third of the limit (a detection limit is 3 sigma of a blank).
    """
    symbols = [e.element for e in elements]
    value = [0.0 if e.below_detection_limit else e.value_mg_per_kg for e in elements]
    sigma = [
        (e.detection_limit_mg_per_kg / 3.0 if math.isfinite(e.detection_limit_mg_per_kg) else 0.0)
        if e.below_detection_limit
        else e.sigma_mg_per_kg
        for e in elements
    ]
    limit = [e.detection_limit_mg_per_kg if e.below_detection_limit else math.nan for e in elements]
    return oxide_purity(value, symbols, target, sigma_g_per_L=sigma, detection_limit_g_per_L=limit)


def certificate(icp: IcpResults, target: str, loi: LossOnIgnition | None = None) -> Certificate:
    """TREO, target oxide / TREO with its uncertainty, REE and non-REE tables, from validated ICP results."""
    ree = icp.rare_earths
    where = f"{icp.source}: sample {icp.sample_id!r}"
    if target not in RARE_EARTHS:
        raise ProductError(f"{where}: the trial's target {target!r} is not a rare earth")
    found = [e for e in ree if e.element == target]
    if not found:
        raise ProductError(f"{where}: no {target} result: the target of the trial must be in the ICP file")
    if found[0].below_detection_limit:
        raise ProductError(f"{where}: {target}, the target, is below its detection limit: no purity can be given")
    result = _purity(ree, target)
    quantified = [e for e in ree if not e.below_detection_limit]
    return Certificate(
        target=target,
        target_oxide=element(target).oxide,
        rare_earths=ree,
        impurities=icp.impurities,
        treo_mg_per_kg=sum(e.oxide_mg_per_kg for e in quantified),
        treo_sigma_mg_per_kg=math.sqrt(sum(e.oxide_sigma_mg_per_kg**2 for e in quantified)),
        purity=float(result.purity[0]),
        purity_sigma=float(result.purity_sigma[0]),
        purity_lower_bound=float(result.purity_lower_bound[0]),
        non_ree_oxides_mg_per_kg=sum(e.oxide_mg_per_kg for e in icp.impurities),
        loi=loi,
    )


# -- live purity and the agreement -----------------------------------------------------------------


@dataclass(frozen=True)
class LivePurity:
    """The live UV-Vis purity at the end of a trial: the mean of its last unflagged analysed spectra."""

    purity: float
    sigma: float  # the larger of the rows' rms purity_sigma and their scatter (see docs/results.md)
    rows: tuple[int, ...]  # analysis rows used
    time_s: tuple[float, ...]  # their times (experiment seconds)
    covered_elements: tuple[str, ...]
    target: str


def live_end_purity(trial: TrialReader, rows: int = END_ROWS) -> LivePurity:
    """The last ``rows`` analysis rows whose spectrum has no flag and whose purity is a number.

    The rows' errors are mostly the calibration's, common to all of them, so averaging does not shrink the
    uncertainty: ``sigma`` is the rms of their ``purity_sigma`` or, if larger, the standard deviation of
    their purities. ProductError when the trial has no such row.
    """
    analysed = trial.rows("analysis")
    flags = trial.dataset("spectrometer", "flag")[:analysed] if analysed else np.zeros(0, np.uint8)
    count = min(analysed, len(flags))
    block = trial.read("analysis", 0, count, columns=("time", "purity", "purity_sigma"))
    good = np.flatnonzero((flags[:count] == 0) & np.isfinite(block["purity"]) & np.isfinite(block["purity_sigma"]))
    if good.size == 0:
        raise ProductError(f"{trial.path}: no analysed spectrum without a flag: no live purity to compare")
    chosen = good[-rows:]
    purity = np.asarray(block["purity"][chosen], dtype=float)
    sigma = np.asarray(block["purity_sigma"][chosen], dtype=float)
    scatter = float(np.std(purity, ddof=1)) if purity.size > 1 else 0.0
    covered = tuple(s.strip() for s in trial.analysis_attrs.get("covered_elements", "").split(",") if s.strip())
    return LivePurity(
        purity=float(np.mean(purity)),
        sigma=max(float(np.sqrt(np.mean(sigma**2))), scatter),
        rows=tuple(int(i) for i in chosen),
        time_s=tuple(float(t) for t in block["time"][chosen]),
        covered_elements=covered or trial.analytes,
        target=trial.target_element,
    )


@dataclass(frozen=True)
class Agreement:
    """Live UV-Vis purity against the ICP purity over the same elements (like for like)."""

    live: LivePurity
    icp_purity: float  # over the live purity's covered elements that the ICP file reports
    icp_sigma: float
    icp_elements: tuple[str, ...]
    icp_treo_purity: float  # the certificate's number (over every rare earth)
    missing_elements: tuple[str, ...]  # covered live, not in the ICP file

    @property
    def difference(self) -> float:
        """live - ICP (the bias of the live purity), mass fraction."""
        return self.live.purity - self.icp_purity

    @property
    def combined_sigma(self) -> float:
        return math.hypot(self.live.sigma, self.icp_sigma)

    @property
    def z(self) -> float:
        return self.difference / self.combined_sigma if self.combined_sigma > 0 else math.inf

    @property
    def consistent(self) -> bool:
        """``|difference| <= AGREEMENT_SIGMAS * combined_sigma``."""
        return abs(self.difference) <= AGREEMENT_SIGMAS * self.combined_sigma

    @property
    def coverage_difference(self) -> float:
        """ICP purity over the covered elements minus over TREO: what elements the spectrometer cannot see
        (La, Ce, Gd, Y, ...) make the live number read high by."""
        return self.icp_purity - self.icp_treo_purity

    def verdict(self) -> str:
        word = "consistent" if self.consistent else "NOT consistent"
        return (
            f"{word}: live - ICP = {100 * self.difference:+.3f} pp, |difference| "
            f"{'<=' if self.consistent else '>'} {AGREEMENT_SIGMAS:g} x combined sigma "
            f"({AGREEMENT_SIGMAS * 100 * self.combined_sigma:.3f} pp); z = {self.z:+.2f}"
        )


def agreement(live: LivePurity, cert: Certificate) -> Agreement:
    """Compare the live purity with the ICP purity computed over the live purity's covered elements."""
    if live.target != cert.target:
        raise ProductError(f"the trial's target is {live.target!r}, the certificate's {cert.target!r}")
    purity, sigma, used = cert.purity_over(live.covered_elements)
    return Agreement(
        live=live,
        icp_purity=purity,
        icp_sigma=sigma,
        icp_elements=used,
        icp_treo_purity=cert.purity,
        missing_elements=tuple(e for e in live.covered_elements if e not in used),
    )


# -- the product file ------------------------------------------------------------------------------


def product_path(trial_path: str | os.PathLike) -> Path:
    """Where the product file of a trial file goes: beside it, ``<stem>.product.json``."""
    trial_path = Path(trial_path)
    return trial_path.with_name(trial_path.stem + PRODUCT_SUFFIX)


def _clean(value: Any) -> Any:
    """JSON of a value: NaN and infinities as null (valid JSON), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _element_json(e: IcpElement) -> dict[str, Any]:
    return {
        "element": e.element,
        "oxide": e.oxide,
        "oxide_factor": e.oxide_factor,
        "lines": e.lines,
        "rows": e.rows,
        "value_mg_per_kg": e.value_mg_per_kg,
        "sigma_mg_per_kg": e.sigma_mg_per_kg,
        "detection_limit_mg_per_kg": e.detection_limit_mg_per_kg,
        "below_detection_limit": e.below_detection_limit,
        "oxide_mg_per_kg": e.oxide_mg_per_kg,
        "oxide_sigma_mg_per_kg": e.oxide_sigma_mg_per_kg,
    }


@dataclass(frozen=True)
class Product:
    """A product file as read back: its JSON content (docs/results.md) and a few named values."""

    path: Path
    data: dict[str, Any]

    @property
    def trial_id(self) -> str:
        return str(self.data["trial_id"])

    @property
    def raw_sha256(self) -> str:
        return str(self.data["raw_sha256"])

    @property
    def purity(self) -> float:
        return _number(self.data["purity"]["value"])

    @property
    def purity_sigma(self) -> float:
        return _number(self.data["purity"]["sigma"])

    @property
    def agreement(self) -> dict[str, Any] | None:
        return self.data.get("agreement")

    def table(self, kind: str) -> list[dict[str, Any]]:
        """``"rare_earths"`` or ``"impurities"``: rows with NaN for what is null in the file."""
        return [
            {k: (_number(v) if k.endswith(("_mg_per_kg", "_factor")) else v) for k, v in row.items()}
            for row in self.data[kind]
        ]

    def matches(self, trial_path: str | os.PathLike) -> bool:
        """Whether the raw trial file still has the checksum this product records (recomputed: reads the file)."""
        from .reanalysis import raw_checksum

        return raw_checksum(trial_path) == self.raw_sha256


def _digest(data: bytes) -> str:
    """SHA-256 of an input file's bytes (the ICP and results files; the raw trial's is reanalysis's)."""
    return hashlib.sha256(data).hexdigest()


def build_product_data(
    trial_path: Path, results: ResultsFile, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The product file's content for a closed trial and a results file (reads both; writes nothing)."""
    from .reanalysis import CHECKSUM_METHOD, raw_checksum

    say = progress or (lambda _message: None)
    icp_path = results.resolve(results.icp_file)
    mapping_path = results.resolve(results.mapping) if results.mapping is not None else None
    say(f"reading ICP results {icp_path}")
    icp = read_icp_csv(icp_path, mapping=mapping_path, sample_id=results.sample_id, digestion=results.digestion)
    with open_trial(trial_path) as trial:
        if trial.state == "running":
            raise ProductError(f"{trial_path}: the trial is still running: certify it when it has ended")
        meta = trial.metadata
        target = trial.target_element
        try:
            live: LivePurity | None = live_end_purity(trial)
            no_agreement = ""
        except ProductError as error:  # the certificate stands on its own; there is nothing to compare it with
            live, no_agreement = None, str(error)
    cert = certificate(icp, target, results.loi)
    say(f"checksumming the raw trial file {trial_path}")
    checksum = raw_checksum(trial_path)
    loi = results.loi
    return _clean(
        {
            "file_format": PRODUCT_FORMAT,
            "trial_id": str(meta.get("trial_id", "")) or trial_path.stem,
            "trial_file": trial_path.name,
            "raw_sha256": checksum,
            "raw_checksum_method": CHECKSUM_METHOD,
            "created_utc": utc_now_iso(),
            "software_version": software_version(),
            "sample": str(meta.get("sample", "")),
            "sample_id": icp.sample_id,
            "method": results.method,
            "laboratory": results.laboratory,
            "analyst": results.analyst,
            "analysed_on": results.analysed_on,
            "notes": results.notes,
            "results_file": {
                "name": results.source.name,
                "sha256": _digest(results.source.read_bytes()),
                "text": results.source.read_text(encoding="utf-8"),
            },
            "icp_file": {
                "name": icp_path.name,
                "sha256": _digest(icp_path.read_bytes()),
                "mapping": icp.mapping,
                "samples": icp.samples,
                "text": icp.text,
            },
            "digestion": results.digestion.model_dump() if results.digestion is not None else None,
            "target": cert.target,
            "target_oxide": cert.target_oxide,
            "rare_earths": [_element_json(e) for e in cert.rare_earths],
            "impurities": [_element_json(e) for e in cert.impurities],
            "treo": {"mg_per_kg": cert.treo_mg_per_kg, "sigma_mg_per_kg": cert.treo_sigma_mg_per_kg},
            "non_ree_oxides_mg_per_kg": cert.non_ree_oxides_mg_per_kg,
            "purity": {
                "value": cert.purity,
                "sigma": cert.purity_sigma,
                "lower_bound": cert.purity_lower_bound,
                "basis": f"{cert.target_oxide} / TREO, mass fraction",
            },
            "loi": None
            if loi is None
            else {
                **loi.model_dump(),
                "sample_g": loi.sample_g,
                "percent": loi.percent,
                "sigma_percent": loi.sigma_percent,
            },
            "agreement": None if live is None else _agreement_json(live, agreement(live, cert)),
            "agreement_note": no_agreement,
        }
    )


def _agreement_json(live: LivePurity, agree: Agreement) -> dict[str, Any]:
    return {
        "live_purity": live.purity,
        "live_sigma": live.sigma,
        "live_rows": live.rows,
        "live_time_s": live.time_s,
        "covered_elements": live.covered_elements,
        "icp_purity": agree.icp_purity,
        "icp_sigma": agree.icp_sigma,
        "icp_elements": agree.icp_elements,
        "missing_elements": agree.missing_elements,
        "icp_treo_purity": agree.icp_treo_purity,
        "difference": agree.difference,
        "combined_sigma": agree.combined_sigma,
        "z": agree.z,
        "consistent": agree.consistent,
        "rule": f"|live - ICP| <= {AGREEMENT_SIGMAS:g} x sqrt(u_live^2 + u_ICP^2)",
        "verdict": agree.verdict(),
    }


def write_product(
    trial_path: str | os.PathLike,
    results_path: str | os.PathLike,
    *,
    replace: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Product:
    """Certify a closed trial: write ``<trial>.product.json`` beside it (atomically) and return it.

    Every input is checked before anything is written; a product file already there is kept unless
    ``replace``. The raw trial file is opened read-only.
    """
    trial_path = Path(trial_path)
    target = product_path(trial_path)
    if target.exists() and not replace:
        raise ProductError(f"{target}: a product file already exists for this trial (replace it with --replace)")
    results = load_results(results_path)
    data = build_product_data(trial_path, results, progress)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, allow_nan=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Product(target, data)


def read_product(path: str | os.PathLike) -> Product:
    """Read a product file (ProductError if it is not one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProductError(f"{path}: no such product file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProductError(f"{path}: not a readable product file: {error}") from None
    if not isinstance(data, dict) or data.get("file_format") != PRODUCT_FORMAT:
        raise ProductError(f"{path}: not a rem-daq product file (file_format is not {PRODUCT_FORMAT!r})")
    missing = [k for k in ("trial_id", "raw_sha256", "purity", "rare_earths", "impurities") if k not in data]
    if missing:
        raise ProductError(f"{path}: damaged product file: no {', '.join(missing)}")
    return Product(path, data)


# -- the bias across trials ------------------------------------------------------------------------


@dataclass(frozen=True)
class BiasChart:
    """An individuals control chart of the live - ICP purity difference across trials (mass fractions)."""

    trial_ids: tuple[str, ...]
    start_times: tuple[str, ...]
    bias: np.ndarray
    combined_sigma: np.ndarray
    consistent: tuple[bool, ...]
    centre: float
    sigma: float  # from the mean moving range / 1.128; NaN with fewer than 3 trials
    lower_limit: float
    upper_limit: float

    @property
    def out_of_control(self) -> tuple[str, ...]:
        if not math.isfinite(self.sigma):
            return ()
        return tuple(t for t, b in zip(self.trial_ids, self.bias) if not self.lower_limit <= b <= self.upper_limit)


def bias_chart(points: Iterable[tuple[str, str, float, float, bool]]) -> BiasChart:
    """The chart of ``(trial_id, start_time, bias, combined_sigma, consistent)`` points, in start-time order.

    Centre line: the mean bias. Control limits: centre +- 3 sigma, sigma estimated from the mean moving range
    of consecutive trials (/ 1.128), the Shewhart individuals chart; with fewer than 3 trials there are no
    limits (NaN).
    """
    ordered = sorted((p for p in points if p[2] is not None and math.isfinite(p[2])), key=lambda p: p[1])
    bias = np.array([p[2] for p in ordered], dtype=float)
    centre = float(np.mean(bias)) if bias.size else math.nan
    sigma = float(np.mean(np.abs(np.diff(bias))) / _D2) if bias.size >= 3 else math.nan
    return BiasChart(
        trial_ids=tuple(p[0] for p in ordered),
        start_times=tuple(p[1] for p in ordered),
        bias=bias,
        combined_sigma=np.array([p[3] for p in ordered], dtype=float),
        consistent=tuple(bool(p[4]) for p in ordered),
        centre=centre,
        sigma=sigma,
        lower_limit=centre - CONTROL_SIGMAS * sigma,
        upper_limit=centre + CONTROL_SIGMAS * sigma,
    )


def product_points(
    products: Iterable[Product], start_times: dict[str, str]
) -> list[tuple[str, str, float, float, bool]]:
    """Bias chart points of product files (those with an agreement)."""
    points = []
    for product in products:
        agree = product.agreement
        if not agree:
            continue
        points.append(
            (
                product.trial_id,
                start_times.get(product.trial_id, str(product.data.get("created_utc", ""))),
                _number(agree.get("difference")),
                _number(agree.get("combined_sigma")),
                bool(agree.get("consistent")),
            )
        )
    return points
