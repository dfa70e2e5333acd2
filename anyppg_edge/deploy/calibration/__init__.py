"""Calibration data for int8 quantization: one stratified, checksummed set of model-input windows.

Every quantizer of the toolkit (PyTorch PTQ, brevitas QAT range initialisation, ONNX Runtime
``quantize_static`` and the TFLite ``representative_dataset``) reads its calibration inputs through
:func:`iter_batches` over one :class:`CalibrationSet`, so all int8 artifacts of a model are calibrated
on exactly the same windows, and the manifest that travels with the set says which ones.

**Windows.** Preprocessed, z-scored 10 s PPG windows at 125 Hz (``[N, L]`` float32, L = ``cfg.window_samples``), cut by
:func:`~anyppg_edge.data.windows.extract_windows` with the reference chain of
:mod:`anyppg_edge.preprocessing`; windows that fail a quality gate (non-finite, flat, saturated PPG
or ECG and, with ``ecg_quality``, the Zhao 2018 ECG quality index) never enter the candidate pool;
their counts by reason are kept in the manifest (``rejected``). Windows read from a shard folder
(``anyppg-edge prepare-data``) were gated when the folder was prepared and are float16-rounded.

**Per-window labels.**

* ``hr_bpm``: the heart rate from the window's ECG R peaks
  (:func:`~anyppg_edge.eval.heart_rate.ecg_heart_rate_bpm`, ``hr_source == "ecg-rpeaks"``); when the
  window has no ECG, or the R peaks give no HR within 30-240 bpm, the PPG spectral-peak HR
  (:func:`~anyppg_edge.eval.baselines.spectral_peak_hr_bpm`, ``hr_source == "ppg-spectral"``):
  :func:`~anyppg_edge.eval.heart_rate.reference_heart_rates` under :data:`HR_POLICY` (no dataset
  HR trace: shard windows carry none).
* ``quality`` (:func:`ppg_quality`), in [0, 1]: the fraction of the PPG window's power in
  0.5-4 Hz (Welch, one Hann segment over the whole window, ``nfft`` 8192) that lies within
  ±0.25 Hz of the heart-rate fundamental ``hr_bpm / 60`` or of its second harmonic. A clean pulse
  wave concentrates its power there (0.85-0.99 on resting recordings); motion artifacts and noise
  spread it (0.1-0.5 on the running segments of IEEE SPC 2015). ±0.25 Hz is the 0.2 Hz half main lobe
  of a 10 s Hann window plus ~3 bpm of heart-rate drift within the window. Because ``hr_bpm`` comes
  from the ECG where there is one, the score also measures how well the PPG agrees with the ECG.

**Stratified sampling.** A stratum is subject × HR bin (:data:`HR_BIN_EDGES_BPM`: <60, 60-80,
80-100, 100-120, >=120 bpm) × quality tertile (``low``/``mid``/``high``, edges at the 1/3 and 2/3
quantiles of ``quality`` over the whole candidate pool, recorded in the manifest). Windows are drawn
one at a time by a balanced round-robin: the next window comes from the non-exhausted stratum whose
subject has been drawn least so far (a round-robin over subjects), ties broken by the smallest sum
of the counts already drawn in its HR bin and in its quality level, then by the smallest sum of the
pool sizes of its HR bin and quality level (rare heart rates and quality levels come first), then by
the fewest windows drawn from the stratum itself, then by a seeded random order; within a stratum
windows come in a seeded random order. So with ``n_windows`` at least the number of subjects every
subject is represented, and every HR bin and quality level present in the pool is reached within the
first rounds (the first, when there are enough subjects to carry them). The set keeps the draw
order (the first batches of :func:`iter_batches` are already balanced). Everything is deterministic
in ``seed``.

Large corpora: at most ``max_candidates`` windows (spread evenly over subjects, seeded) are labelled;
for a shard folder they are chosen before any window is read.

**On disk** (:func:`save_calibration_set`): ``windows.npy`` (float32 ``[N, L]``), ``meta.json``
(per-window metadata, one list per field) and ``manifest.json`` (schema
:data:`CALIBRATION_SCHEMA`; sha256 of the windows array and of ``meta.json``, the preprocessing config
and its hash, per-dataset/subject/HR-bin/quality counts, seed, rejected counts), each written
atomically. :func:`load_calibration_set` verifies both checksums
(:class:`~anyppg_edge.errors.DataFormatError`) and the preprocessing config hash
(:class:`~anyppg_edge.errors.ContractMismatchError`).

**Committed default.** ``anyppg_edge/deploy/calibration/default/`` (package data: it installs with
the wheel; simulator only, 64 windows, seed 0), regenerated with ``python -m calibration_data
default``. Should the folder be absent, :func:`load_default_calibration_set` rebuilds the same set
from the embedded simulator in memory (a few seconds; needs neurokit2).
"""

from anyppg_edge.deploy.calibration.build import (
    DEFAULT_HOP_S,
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_N_WINDOWS,
    DEFAULT_SEED,
    DEFAULT_SOURCES,
    HR_BIN_EDGES_BPM,
    HR_BIN_LABELS,
    HR_POLICY,
    QUALITY_LEVELS,
    SIMULATOR_COHORT,
    build_calibration_set,
    build_default_calibration_set,
    hr_bin_labels,
    load_default_calibration_set,
    ppg_quality,
)
from anyppg_edge.deploy.calibration.store import (
    CALIBRATION_SCHEMA,
    CalibrationSet,
    default_calibration_dir,
    iter_batches,
    load_calibration_set,
    save_calibration_set,
    windows_sha256,
)

__all__ = [
    "CALIBRATION_SCHEMA",
    "DEFAULT_HOP_S",
    "DEFAULT_MAX_CANDIDATES",
    "DEFAULT_N_WINDOWS",
    "DEFAULT_SEED",
    "DEFAULT_SOURCES",
    "HR_BIN_EDGES_BPM",
    "HR_BIN_LABELS",
    "HR_POLICY",
    "QUALITY_LEVELS",
    "SIMULATOR_COHORT",
    "CalibrationSet",
    "build_calibration_set",
    "build_default_calibration_set",
    "default_calibration_dir",
    "hr_bin_labels",
    "iter_batches",
    "load_calibration_set",
    "load_default_calibration_set",
    "ppg_quality",
    "save_calibration_set",
    "windows_sha256",
]
