"""The in-memory recording types every stage passes around (readers, simulator, data shards,
streaming harness).

A :class:`Recording` is one subject's synchronized multi-channel recording: a mapping from a
channel name to a :class:`Channel` (a 1-D float64 array with its own sample rate and unit).
Canonical names: ``"ppg"`` is the primary PPG, ``"ecg"`` the primary ECG; every other channel
keeps a short descriptive lower-case name (``"ppg2"``, ``"acc_x"``, ``"resp"``, ``"ecg_v"``, ...).
Channels may have different sample rates (EDF files often do); all start at t = 0 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anyppg_edge.errors import DataFormatError, InvalidSignalError

PPG = "ppg"
ECG = "ecg"


@dataclass(eq=False)
class Channel:
    """One uniformly sampled signal. ``data`` is stored as a 1-D float64 array (converted on
    construction; NaN marks missing samples and is allowed, infinities are not)."""

    data: np.ndarray
    sample_rate_hz: float
    unit: str = ""

    def __post_init__(self) -> None:
        arr = np.asarray(self.data)
        if arr.dtype.kind not in "iuf":
            raise InvalidSignalError(f"channel data must be numeric (int or float), got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise InvalidSignalError(f"channel data must be 1-D, got shape {arr.shape}")
        arr = arr.astype(np.float64, copy=False)
        if np.isinf(arr).any():
            raise InvalidSignalError("channel data contains +/-inf (NaN is allowed for gaps)")
        self.data = arr
        try:
            rate = float(self.sample_rate_hz)
        except (TypeError, ValueError) as exc:
            raise InvalidSignalError(f"sample_rate_hz must be a number, got {self.sample_rate_hz!r}") from exc
        if not math.isfinite(rate) or rate <= 0:
            raise InvalidSignalError(f"sample_rate_hz must be finite and > 0, got {rate}")
        self.sample_rate_hz = rate
        if not isinstance(self.unit, str):
            raise InvalidSignalError(f"unit must be a str, got {type(self.unit).__name__}")

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    def times_s(self) -> np.ndarray:
        """Sample times in seconds from the start of the recording."""
        return np.arange(self.n_samples) / self.sample_rate_hz


@dataclass(eq=False)
class Recording:
    """A subject's synchronized recording. ``meta`` holds dataset-specific extras (reference
    heart-rate traces, R-peak times, source file, ...)."""

    subject_id: str
    dataset: str
    channels: dict[str, Channel]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.subject_id, str) or not self.subject_id:
            raise DataFormatError(f"subject_id must be a non-empty str, got {self.subject_id!r}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise DataFormatError(f"dataset must be a non-empty str, got {self.dataset!r}")
        if not isinstance(self.channels, dict) or not self.channels:
            raise DataFormatError(f"recording {self.subject_id!r} needs at least one channel")
        for name, ch in self.channels.items():
            if not isinstance(name, str) or not name:
                raise DataFormatError(f"channel names must be non-empty str, got {name!r}")
            if not isinstance(ch, Channel):
                raise DataFormatError(f"channel {name!r} must be a Channel, got {type(ch).__name__}")
        if not isinstance(self.meta, dict):
            raise DataFormatError(f"meta must be a dict, got {type(self.meta).__name__}")

    @property
    def channel_names(self) -> list[str]:
        return list(self.channels)

    def has(self, name: str) -> bool:
        return name in self.channels

    def channel(self, name: str) -> Channel:
        """The named channel; :class:`DataFormatError` naming the available ones if absent."""
        try:
            return self.channels[name]
        except KeyError:
            raise DataFormatError(
                f"recording {self.subject_id!r} ({self.dataset}) has no channel {name!r}; "
                f"available: {', '.join(self.channels)}"
            ) from None

    @property
    def ppg(self) -> Channel:
        return self.channel(PPG)

    @property
    def ecg(self) -> Channel:
        return self.channel(ECG)

    def with_ppg(self, name: str) -> Recording:
        """The same recording (subject, dataset, meta, ECG) whose ``"ppg"`` is channel ``name``, e.g.
        ``"ppg2"``, the second wrist sensor of IEEE SPC 2015: another view of the same beats for the
        paired-window code, which reads ``"ppg"``. The original primary PPG stays as ``"ppg1"``."""
        ch = self.channel(name)
        if name == PPG:
            return self
        channels = {PPG: ch, **{("ppg1" if k == PPG else k): v for k, v in self.channels.items() if k != name}}
        return Recording(self.subject_id, self.dataset, channels, dict(self.meta))

    @property
    def duration_s(self) -> float:
        """Duration of the longest channel, in seconds."""
        return max(ch.duration_s for ch in self.channels.values())

    def __repr__(self) -> str:
        chans = ", ".join(f"{n}[{c.n_samples}@{c.sample_rate_hz:g}Hz]" for n, c in self.channels.items())
        return (
            f"Recording(subject_id={self.subject_id!r}, dataset={self.dataset!r}, "
            f"duration_s={self.duration_s:.1f}, channels={{{chans}}}, meta_keys={list(self.meta)})"
        )
