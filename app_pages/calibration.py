"""Calibration: the calibration in use (or any in DATA/calibrations), with its standards and quality report."""

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

from app_pages._calibration import list_calibrations, load_calibration, matches_trial_copy, trial_calibration
from app_pages._figures import sensitivity_figure, standards_error_figure, standards_figure
from app_pages._paths import OutsideDataFolder, confine, list_trials, relative_name, running_trials
from app_pages._view import data_folder, fmt, guarded
from daq import TrialFileError, open_trial

IN_USE = "In use (running trial, else the latest)"
_CONFIG = {"displaylogo": False}


_LABELS = {
    "loo_rmse_g_per_L": "leave-one-out RMSE g/L",
    "detection_limit_g_per_L": "detection limit g/L",
    "loo_error_g_per_L": "LOO error g/L",
    "fit_residual_rms": "fit residual RMS",
}


def _label(name: str) -> str:
    """A column title for a quality field (known ones by name, others from the field's name)."""
    return _LABELS.get(name, name.replace("_g_per_L", " g/L").replace("_", " "))


def quality_tables(calibration) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """The quality report as tables: per analyte, per standard, and scalars.

    Fields are read from the report itself (dataclass fields, sorted by shape), so
    a field the analysis package adds later is shown without changing this page.
    """
    analytes = tuple(calibration.analytes)
    quality, standards = calibration.quality, calibration.standards
    per_analyte = pd.DataFrame({"analyte": analytes})
    per_standard = None
    if standards is not None:
        per_standard = pd.DataFrame({"standard": list(standards.names)})
        for k, analyte in enumerate(analytes):
            per_standard[f"{analyte} g/L"] = np.asarray(standards.concentration_g_per_L)[:, k]
    scalars = {}
    if quality is None:
        return per_analyte, per_standard, scalars
    K, M = len(analytes), len(per_standard) if per_standard is not None else -1
    for field in dataclasses.fields(quality):
        value = getattr(quality, field.name)
        shape = np.shape(value)
        if field.name == "calibrated_range_g_per_L" and shape == (K, 2):
            per_analyte["calibrated from g/L"], per_analyte["to g/L"] = value[:, 0], value[:, 1]
        elif shape == (K,):
            per_analyte[_label(field.name)] = value
        elif per_standard is not None and shape == (M,):
            per_standard[_label(field.name)] = value
        elif per_standard is not None and shape == (M, K):
            for k, analyte in enumerate(analytes):
                per_standard[f"{analyte} {_label(field.name)}"] = value[:, k]
        elif shape == ():
            scalars[_label(field.name)] = value
    return per_analyte, per_standard, scalars


def show_calibration(calibration, name: str) -> None:
    """Everything a calibration file holds: identity, sensitivity, quality per analyte, standards."""
    st.subheader(f"Calibration `{calibration.calibration_id}`")
    created, version = getattr(calibration, "created_utc", ""), getattr(calibration, "software_version", "")
    order = getattr(calibration, "baseline_order", None)
    st.caption(
        " · ".join(
            part
            for part in (
                f"file `{name}`" if name else "",
                f"created {created}" if created else "",
                f"software {version}" if version else "",
                f"analytes {', '.join(calibration.analytes)}",
                "no baseline" if order is None else f"baseline Legendre order {order}",
            )
            if part
        )
    )
    quality, standards = calibration.quality, calibration.standards
    per_analyte, per_standard, scalars = quality_tables(calibration)
    columns = st.columns(2 + min(len(scalars), 3))
    columns[0].metric("Analytes", len(calibration.analytes))
    columns[1].metric("Standards", len(standards.names) if standards is not None else "—")
    for column, (label, value) in zip(columns[2:], scalars.items()):
        column.metric(label.capitalize(), fmt(value, ".4g"))
    st.plotly_chart(
        sensitivity_figure(
            calibration.wavelength_nm,
            calibration.sensitivity,
            calibration.analytes,
            key=calibration.calibration_id,
            title="Sensitivity (absorbance per g/L)",
        ),
        key="calibration-sensitivity",
        config=_CONFIG,
    )
    if quality is None:
        st.info("This calibration has no quality report (it was made from known sensitivities, not standards).")
    else:
        st.markdown("**Quality per analyte**")
        st.dataframe(per_analyte, hide_index=True, width="stretch")
        extra = [f"{label} {fmt(value, '.4g')}" for label, value in list(scalars.items())[3:]]
        st.caption(
            "Detection limit: 3 σ of the concentration estimated for a blank measured like the standards."
            + (" " + " · ".join(extra) + "." if extra else "")
        )
    if standards is None or per_standard is None:
        st.info("The calibration file does not hold its standards.")
        return
    st.markdown("**Standards**")
    st.dataframe(per_standard, hide_index=True, width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(
        standards_figure(
            calibration.wavelength_nm,
            standards.names,
            standards.absorbance,
            key=calibration.calibration_id + "-standards",
        ),
        key="calibration-standards",
        config=_CONFIG,
    )
    loo, residual = getattr(quality, "loo_error_g_per_L", None), getattr(quality, "fit_residual_rms", None)
    if loo is not None and residual is not None:
        right.plotly_chart(
            standards_error_figure(
                standards.names, calibration.analytes, loo, residual, key=calibration.calibration_id + "-err"
            ),
            key="calibration-errors",
            config=_CONFIG,
        )


def show_in_use(folder) -> None:
    """The calibration of the running trial (else the latest): its file if readable, else the trial's copy."""
    trials = running_trials(folder) or list_trials(folder)
    if not trials:
        st.info(
            f"No trials in `{folder.trials}` yet, so no calibration is in use. Pick a calibration file above "
            "to inspect it."
        )
        return
    trial = trials[0]
    try:
        with open_trial(trial) as reader:
            attrs, arrays = reader.analysis_attrs, reader.calibration_arrays()
            analytes, wavelength, state = reader.analytes, reader.wavelength_nm, reader.state
    except (TrialFileError, OSError, KeyError, ValueError, RuntimeError) as error:
        st.error(f"`{relative_name(folder, trial)}` cannot be read as a trial file: {error}")
        return
    st.caption(f"In use by trial `{relative_name(folder, trial)}` ({state}).")
    source = trial_calibration(folder, attrs)
    if source.calibration is not None:
        if not matches_trial_copy(source.calibration, arrays):
            st.warning("The trial's stored sensitivity differs from the calibration file's.")
        show_calibration(source.calibration, source.name)
        return
    st.warning(
        f"Calibration `{attrs.get('calibration_id', '?')}`: {source.problem}. Showing the copy stored in "
        "the trial file (its sensitivity); the standards and the quality report are only in the calibration "
        "file."
    )
    st.caption(
        f"recorded file: `{source.name or '?'}` · analytes {', '.join(analytes)} · "
        f"covers {attrs.get('covered_elements', '?')}"
    )
    sensitivity = arrays.get("sensitivity")
    axis = arrays.get("wavelength", wavelength)
    if sensitivity is None or np.ndim(sensitivity) != 2 or np.shape(sensitivity)[1] != len(axis):
        st.info("The trial file holds no usable sensitivity either.")
        return
    st.plotly_chart(
        sensitivity_figure(
            axis,
            sensitivity,
            analytes,
            key=str(attrs.get("calibration_id", "")),
            title="Sensitivity stored in the trial (absorbance per g/L)",
        ),
        key="calibration-trial-copy",
        config=_CONFIG,
    )


@guarded("The Calibration page")
def calibration_page() -> None:
    """The calibration in use, or the one chosen (selector or ``?calibration=``)."""
    folder = data_folder()
    if folder is None:
        return
    files = [relative_name(folder, path) for path in list_calibrations(folder)]
    options = [IN_USE, *files]
    requested = st.query_params.get("calibration")
    index = 0
    if requested:
        try:
            wanted = relative_name(folder, confine(folder, requested))
            if wanted not in options:
                st.warning(f"`?calibration={requested}`: no such calibration file in the data folder.")
            else:
                index = options.index(wanted)
        except OutsideDataFolder as error:
            st.error(f"Refused `?calibration={requested}`: {error}.")
    choice = st.selectbox("Calibration", options, index=index, key="calibration-choice")
    if choice == IN_USE:
        show_in_use(folder)
        return
    try:
        path = confine(folder, choice)
    except OutsideDataFolder as error:
        st.error(f"Refused: {error}.")
        return
    try:
        calibration = load_calibration(path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        st.error(f"`{choice}` cannot be read as a calibration file: {error}")
        return
    show_calibration(calibration, choice)


st.title("Calibration")
calibration_page()
