"""Recordings: the in-memory types, readers for the real-data formats, and the paired PPG+ECG
simulator used as the default data for demos and fast tests."""

from anyppg_edge.data.readers import (
    FORMATS,
    load_shared_recordings,
    rate_from_time_column,
    read_bidmc_csv,
    read_edf,
    read_ieee_spc2015,
    read_neurokit_csv,
    read_npz,
    read_recording,
    read_wfdb,
    write_npz,
)
from anyppg_edge.data.recording import ECG, PPG, Channel, Recording
from anyppg_edge.data.simulator import (
    SimulatorConfig,
    hr_trace_from_beats,
    simulate_cohort,
    simulate_pair,
)

__all__ = [
    "ECG",
    "FORMATS",
    "PPG",
    "Channel",
    "Recording",
    "SimulatorConfig",
    "hr_trace_from_beats",
    "load_shared_recordings",
    "rate_from_time_column",
    "read_bidmc_csv",
    "read_edf",
    "read_ieee_spc2015",
    "read_neurokit_csv",
    "read_npz",
    "read_recording",
    "read_wfdb",
    "simulate_cohort",
    "simulate_pair",
    "write_npz",
]
