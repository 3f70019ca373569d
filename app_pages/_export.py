"""CSV downloads of a trial: its one-row summary, and its per-spectrum results."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from daq import TrialReader, open_trial

from ._figures import oxide_of
from ._follow import Snapshot

__all__ = ["summary_row", "summary_csv", "analysis_csv"]

_BLOCK_ROWS = 1 << 16


def summary_row(reader: TrialReader, snapshot: Snapshot) -> dict:
    """One row describing a trial: identity, state, counts, final purity with 2 sigma, furnace extremes."""
    row = reader.summary()
    analysis = snapshot.latest_analysis
    temperature = snapshot.furnace["temperature"]
    sigma = analysis.get("purity_sigma", math.nan)
    row.update(
        {
            "target_oxide": oxide_of(snapshot.target),
            "final_purity_2sigma": 2 * sigma if sigma is not None else math.nan,
            "final_time_s": analysis.get("time", math.nan),
            "max_temperature_C": float(np.nanmax(temperature.maximum)) if temperature.rows else math.nan,
            "calibration_id": snapshot.analysis_attrs.get("calibration_id", ""),
            "calibration_file": snapshot.analysis_attrs.get("calibration_file", ""),
            "software_version": snapshot.metadata.get("software_version", ""),
        }
    )
    row["file"] = Path(str(row["file"])).name
    for k, analyte in enumerate(snapshot.analytes):
        concentration = analysis.get("concentration")
        row[f"final_{analyte}_g_per_L"] = float(concentration[k]) if concentration is not None else math.nan
    return row


def summary_csv(reader: TrialReader, snapshot: Snapshot) -> str:
    """The summary row as CSV text (header + one line)."""
    return pd.DataFrame([summary_row(reader, snapshot)]).to_csv(index=False)


def analysis_csv(path: Path) -> str:
    """Every analysed spectrum of a trial as CSV (time, purity, sigma, concentrations), read in blocks."""
    out = io.StringIO()
    with open_trial(path) as reader:
        analytes = reader.analytes
        rows = reader.rows("analysis")
        for start in range(0, max(rows, 1), _BLOCK_ROWS):
            block = reader.read("analysis", start, min(rows, start + _BLOCK_ROWS))
            frame = pd.DataFrame(
                {
                    "time_s": block["time"],
                    "purity": block["purity"],
                    "purity_sigma": block["purity_sigma"],
                    "residual_rms": block["residual_rms"],
                }
            )
            for k, analyte in enumerate(analytes):
                frame[f"{analyte}_g_per_L"] = block["concentration"][:, k]
                frame[f"{analyte}_sigma_g_per_L"] = block["sigma"][:, k]
            frame.to_csv(out, index=False, header=start == 0)
    return out.getvalue()
