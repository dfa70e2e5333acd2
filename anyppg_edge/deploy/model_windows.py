"""The windows a model of a given input contract reads from a recording, for every offline window
source of the deploy chain (calibration, QAT, parity and golden sets, downstream parity, benches).

The PPG follows the one rule of :func:`anyppg_edge.data.native_rate.model_input_recording`: a 125 Hz
contract cuts the recording itself, a native-rate contract (25 or 50 Hz) cuts the recording as a
watch sensor at that rate delivers it (never a resampled 125 Hz recording). The ECG beside those
windows is a *reference* signal (heart-rate labels, the CLIP teacher's ECG tower), so
:func:`model_windows` gives it at the reference rate (:func:`~anyppg_edge.data.native_rate.reference_config`), row for row with the
native PPG: R peaks found on an ECG brought down to 25 Hz are far off (tests/test_native_data.py).
"""

from __future__ import annotations

import numpy as np

from anyppg_edge.data.native_rate import is_native_rate, model_input_recording, reference_config
from anyppg_edge.data.recording import Recording
from anyppg_edge.data.windows import WindowSet, extract_windows
from anyppg_edge.preprocessing import PreprocessConfig

__all__ = ["model_ppg_windows", "model_windows"]


def model_ppg_windows(rec: Recording, cfg: PreprocessConfig, hop_s: float, ecg_quality: bool = False) -> WindowSet:
    """``extract_windows(model_input_recording(rec, cfg), cfg, ...)``: the model-input windows of a
    recording with a PPG and an ECG channel (the ECG at ``cfg``'s rate; see :func:`model_windows`
    for it at the reference rate)."""
    return extract_windows(model_input_recording(rec, cfg), cfg, hop_s=hop_s, ecg_quality=ecg_quality)


def model_windows(rec: Recording, cfg: PreprocessConfig, hop_s: float, ecg_quality: bool = False) -> WindowSet:
    """The windows of ``rec`` (with an ``ecg`` channel) a model of contract ``cfg`` reads: ``ppg``
    ``[N, cfg.window_samples]`` by :func:`model_ppg_windows`; ``ecg`` ``[N, reference window]`` at
    :func:`reference_config`'s rate, cut at the same starts. For a 125 Hz contract exactly
    :func:`~anyppg_edge.data.windows.extract_windows`. A native window whose start the reference chain
    refuses is dropped (counted in ``rejected`` as ``reference-chain``)."""
    ws = model_ppg_windows(rec, cfg, hop_s, ecg_quality)
    if not is_native_rate(cfg):
        return ws
    ref = extract_windows(rec, reference_config(cfg), hop_s=hop_s, ecg_quality=False)
    keep = np.isin(ws.start_s, ref.start_s)
    pos = np.searchsorted(ref.start_s, ws.start_s[keep])
    rejected = ws.rejected.copy()
    if (~keep).any():
        rejected["reference-chain"] += int((~keep).sum())
    return WindowSet(ws.ppg[keep], ref.ecg[pos], ws.subject_id[keep], ws.dataset[keep], ws.start_s[keep],
                     rejected, ws.polarity)
