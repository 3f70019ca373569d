"""Paths of the shipped simulated bench, recipes and standards, and the simulator's concentration text, for tests."""

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIM_STATION = ROOT / "hardware/stations/sim.toml"
STANDARDS = ROOT / "seeds/standards/nd-pr-5.toml"
QUICK_RECIPE = ROOT / "seeds/recipes/quick.toml"


def format_concentrations(analytes, concentration_g_per_L) -> str:
    """``Nd=12,Pr=0.06``: the simulator's ``SIM:STAN`` argument (zero concentrations left out)."""
    return ",".join(f"{a}={c:.6g}" for a, c in zip(analytes, concentration_g_per_L) if c > 0)


def parse_concentrations(analytes, text: str) -> np.ndarray:
    """The concentrations (g/L) of ``analytes`` in a ``SIM:TRUT?`` answer (absent ones 0)."""
    values = dict(item.split("=") for item in text.strip().strip('"').split(",") if item)
    return np.array([float(values.get(a, 0.0)) for a in analytes])
