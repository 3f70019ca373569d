"""Purity curves of several trials, for the Trials page's comparison (no Streamlit).

Each curve is one stream's purity over the trial, time since the trial's start, decimated as the Live page
draws it (:meth:`daq.TrialReader.decimated`: min/max per bucket, at most ``max_points`` buckets): opening a
long trial to compare it reads a bounded amount.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from analysis import UnknownElementError, element
from daq import open_trial

from ._traces import MAX_POINTS

__all__ = ["FIRST_STREAM", "PurityCurve", "purity_curve", "trial_streams"]

FIRST_STREAM = ""
"""The stream ``purity_curve`` takes when none is named: each trial's first (``/entry/analysis``)."""


@dataclass(frozen=True)
class PurityCurve:
    """One trial's purity of one stream vs time since its start: bucket start times, min and max per bucket."""

    trial_id: str
    stream: str
    target: str
    label: str
    time_s: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    bucket: int
    rows: int


def _oxide(target: str) -> str:
    try:
        return element(target).oxide
    except (UnknownElementError, KeyError, ValueError):
        return target or "target"


def trial_streams(path: str | os.PathLike) -> tuple[str, ...]:
    """The analysed streams of a trial file, the first first (a 1.x file: ``("spectrometer",)``)."""
    with open_trial(path) as trial:
        return trial.streams()


def purity_curve(
    path: str | os.PathLike, stream: str = FIRST_STREAM, max_points: int = MAX_POINTS
) -> PurityCurve | None:
    """The purity of ``stream`` (default: the first) over the trial in ``path``; None if it has no such stream."""
    with open_trial(path) as trial:
        streams = trial.streams()
        name = stream or streams[0]
        if name not in streams:
            return None
        info = trial.stream(name)
        rows = trial.rows(info.key)
        decimated = trial.decimated(info.key, "purity", max_points=max_points)
        trial_id = str(trial.metadata.get("trial_id", "") or trial.path.stem)
    several = len(streams) > 1
    label = (
        f"{trial_id} · {name} · {_oxide(info.target_element)}"
        if several
        else f"{trial_id} · {_oxide(info.target_element)}"
    )
    return PurityCurve(
        trial_id=trial_id,
        stream=name,
        target=info.target_element,
        label=label,
        time_s=decimated.time_s,
        minimum=decimated.minimum,
        maximum=decimated.maximum,
        bucket=max(1, -(-rows // max_points)),
        rows=rows,
    )
