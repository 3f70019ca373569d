"""Simulated instruments that speak the real wire protocols.

Each simulator runs as its own process (``python -m drivers.sim.furnace``,
``python -m drivers.sim.spectrometer``). Their physical truth stays here: the
analysis package never imports it.
"""
