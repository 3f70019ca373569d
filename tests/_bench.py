"""Paths of the shipped simulated bench, recipes and standards, for tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIM_STATION = ROOT / "hardware/stations/sim.toml"
STANDARDS = ROOT / "seeds/standards/nd-pr-5.toml"
QUICK_RECIPE = ROOT / "seeds/recipes/quick.toml"
