"""Building a calibration set: per-window labels (PPG quality, heart rate), the candidate pool from
recordings or shards, the stratified selection, and the committed default."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from anyppg_edge import __version__
from anyppg_edge import preprocessing as pp
from anyppg_edge.data.native_rate import is_native_rate, model_input_recording, reference_config
from anyppg_edge.data.recording import Recording
from anyppg_edge.data.windows import _reason
from anyppg_edge.deploy.calibration.store import (
    CALIBRATION_SCHEMA,
    MANIFEST_FILE,
    META_FILE,
    WINDOWS_FILE,
    CalibrationSet,
    _meta_bytes,
    default_calibration_dir,
    load_calibration_set,
    windows_sha256,
)
from anyppg_edge.deploy.model_windows import model_windows
from anyppg_edge.errors import ContractMismatchError, DataFormatError, InvalidSignalError
from anyppg_edge.eval.heart_rate import HrPolicy, reference_heart_rates
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

HR_BIN_EDGES_BPM = (60.0, 80.0, 100.0, 120.0)
HR_BIN_LABELS = ("<60", "60-80", "80-100", "100-120", ">=120")
QUALITY_LEVELS = ("low", "mid", "high")
# ECG-derived HR outside this range is treated as a failed detection (PPG spectral fallback).
HR_VALID_BPM = (30.0, 240.0)
QUALITY_BAND_HZ = (0.5, 4.0)
QUALITY_HALF_WIDTH_HZ = 0.25
QUALITY_NFFT = 8192
HR_SOURCES = ("ecg-rpeaks", "ppg-spectral")
# The labels' heart rate: the reference-HR order of anyppg_edge.eval.heart_rate without the dataset
# trace (shard windows carry none), ECG R peaks within HR_VALID_BPM, else the PPG spectral peak.
HR_POLICY = HrPolicy(use_trace=False, valid_bpm=HR_VALID_BPM, ppg_fallback=True)

# The "simulator" source: a fixed cohort (its own seed, independent of the sampling seed, so that
# "simulator" names the same data whatever seed the selection uses).
SIMULATOR_COHORT: dict[str, Any] = {"n_subjects": 8, "duration_s": 120.0, "seed": 0}

# The committed default set (``python -m calibration_data default``).
DEFAULT_SOURCES = ("simulator",)
DEFAULT_N_WINDOWS = 64
DEFAULT_SEED = 0
DEFAULT_HOP_S = 5.0
DEFAULT_MAX_CANDIDATES = 8192

Source = str | os.PathLike | Sequence[Recording]

# In the manifest of a native-rate set (a 125 Hz set's manifest is unchanged).
NATIVE_RATE_NOTE = (
    "PPG windows sampled like a sensor at the contract's rate (anyppg_edge.data.native_rate.model_input_recording; "
    "shard folders: their --native-rates companions), band-pass and z-score at that rate, nothing resampled; "
    "HR labels from the ECG at the reference 125 Hz chain, cut at the same starts"
)


# --------------------------------------------------------------------------------------------------
# per-window labels
# --------------------------------------------------------------------------------------------------


def ppg_quality(
    windows: Any,
    hr_bpm: Any,
    fs: float = 125.0,
    band_hz: tuple[float, float] = QUALITY_BAND_HZ,
    half_width_hz: float = QUALITY_HALF_WIDTH_HZ,
) -> np.ndarray:
    """PPG signal-quality score in [0, 1] per window: the fraction of the Welch power in ``band_hz``
    that lies within ``half_width_hz`` of ``hr_bpm / 60`` or of ``2 * hr_bpm / 60`` (bins counted once).

    ``windows``: ``[n, samples]`` (or ``[n, 1, samples]``); ``hr_bpm``: ``[n]`` finite heart rates.
    A window with no power in the band scores 0.
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim == 3 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 2:
        raise ValueError(f"windows must be [n, samples] (or [n, 1, samples]), got shape {np.shape(windows)}")
    hr = np.asarray(hr_bpm, dtype=np.float64).reshape(-1)
    if hr.shape[0] != x.shape[0]:
        raise ValueError(f"hr_bpm has {hr.shape[0]} values for {x.shape[0]} windows")
    if not np.isfinite(hr).all() or not np.isfinite(x).all():
        raise ValueError("windows and hr_bpm must be finite")
    if x.shape[0] == 0:
        return np.zeros(0)
    nper = x.shape[1]
    f, p = signal.welch(x, fs=fs, nperseg=nper, nfft=max(QUALITY_NFFT, nper), detrend="constant", axis=-1)
    band = (f >= band_hz[0]) & (f <= band_hz[1])
    f, p = f[band], p[:, band]
    f0 = hr[:, None] / 60.0
    near = (np.abs(f[None] - f0) <= half_width_hz) | (np.abs(f[None] - 2 * f0) <= half_width_hz)
    total = p.sum(axis=1)
    peak = (p * near).sum(axis=1)
    return np.clip(np.divide(peak, total, out=np.zeros_like(total), where=total > 0), 0.0, 1.0)


def hr_bin_labels(hr_bpm: Any) -> np.ndarray:
    """HR bin label (one of :data:`HR_BIN_LABELS`) of each heart rate."""
    idx = np.digitize(np.asarray(hr_bpm, dtype=np.float64), HR_BIN_EDGES_BPM)
    return np.asarray(HR_BIN_LABELS)[idx]


# --------------------------------------------------------------------------------------------------
# candidate pool
# --------------------------------------------------------------------------------------------------


@dataclass
class _Pool:
    ppg: np.ndarray  # [N, L] float32
    ecg: np.ndarray  # [N, L] float32 (zeros where has_ecg is False)
    has_ecg: np.ndarray  # [N] bool
    source: np.ndarray
    dataset: np.ndarray
    subject_id: np.ndarray
    start_s: np.ndarray

    @classmethod
    def concat(cls, parts: list[_Pool], window_samples: int, ecg_samples: int | None = None) -> _Pool:
        if not parts:
            z = np.zeros((0, window_samples), np.float32)
            e = np.zeros(0, str)
            return cls(z, np.zeros((0, ecg_samples or window_samples), np.float32), np.zeros(0, bool), e, e, e, np.zeros(0))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def take(self, idx: np.ndarray) -> _Pool:
        return _Pool(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return int(self.ppg.shape[0])


def _ppg_only_windows(rec: Recording, cfg: PreprocessConfig, hop_s: float) -> tuple[list, list, Counter]:
    """PPG windows of a recording without ECG: the PPG half of :func:`extract_windows`."""
    ch = rec.channel("ppg")
    n_win = int(np.floor((ch.duration_s - cfg.window_s) / hop_s + 1e-9)) + 1
    n = pp.window_length_samples(ch.sample_rate_hz, cfg)
    out, starts, rejected = [], [], Counter()
    for i in range(max(n_win, 0)):
        t0 = i * hop_s
        a = round(t0 * ch.sample_rate_hz)
        try:
            out.append(pp.preprocess_ppg_window(ch.data[a : a + n], ch.sample_rate_hz, cfg))
        except InvalidSignalError as exc:
            rejected[_reason(exc)] += 1
            continue
        starts.append(t0)
    return out, starts, rejected


def _pool_from_recordings(
    recs: Sequence[Recording],
    name: str,
    cfg: PreprocessConfig,
    hop_s: float,
    ecg_quality: bool,
    progress: bool,
) -> tuple[_Pool, Counter]:
    """Candidate windows of recordings: the PPG as the model of contract ``cfg`` reads it
    (:func:`~anyppg_edge.deploy.model_windows.model_windows`: sampled like the sensor for a native-rate
    contract), the ECG (for the HR labels) at the reference rate."""
    L = cfg.window_samples
    L_ecg = reference_config(cfg).window_samples
    parts: list[_Pool] = []
    rejected: Counter = Counter()
    for rec in _bar(recs, progress, f"calibration {name}"):
        if not isinstance(rec, Recording):
            raise TypeError(f"source {name!r}: expected Recording objects, got {type(rec).__name__}")
        if rec.has("ecg"):
            ws = model_windows(rec, cfg, hop_s=hop_s, ecg_quality=ecg_quality)
            ppg, ecg, starts, has = ws.ppg, ws.ecg, ws.start_s, np.ones(len(ws), bool)
            rejected.update(ws.rejected)
        else:
            wins, st, rej = _ppg_only_windows(model_input_recording(rec, cfg), cfg, hop_s)
            ppg = np.stack(wins) if wins else np.zeros((0, L), np.float32)
            ecg, starts, has = np.zeros((len(ppg), L_ecg), np.float32), np.asarray(st, np.float64), np.zeros(len(wins), bool)
            rejected.update(rej)
        k = len(ppg)
        parts.append(
            _Pool(
                ppg.astype(np.float32, copy=False),
                ecg.astype(np.float32, copy=False),
                has,
                np.full(k, name),
                np.full(k, rec.dataset),
                np.full(k, rec.subject_id),
                np.asarray(starts, np.float64),
            )
        )
    return _Pool.concat(parts, L, L_ecg), rejected


def _cap_per_subject(keys: np.ndarray, max_candidates: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of at most ``max_candidates`` rows, spread evenly over the subject ``keys``."""
    n = len(keys)
    if n <= max_candidates:
        return np.arange(n)
    uniq, inv = np.unique(keys, return_inverse=True)
    cap = max(1, math.ceil(max_candidates / len(uniq)))
    keep = []
    for k in range(len(uniq)):
        rows = np.flatnonzero(inv == k)
        keep.append(rows if rows.size <= cap else np.sort(rng.choice(rows, size=cap, replace=False)))
    return np.sort(np.concatenate(keep))


def _pool_from_shards(
    path: Path, name: str, cfg: PreprocessConfig, max_candidates: int, rng: np.random.Generator
) -> tuple[_Pool, Counter]:
    from anyppg_edge.data.shard_dataset import ShardDataset

    if not path.is_dir():
        raise DataFormatError(
            f"calibration source {str(path)!r} is not a directory (nor 'shared'/'simulator')"
        )
    # a native-rate contract reads the folder's companion windows at its rate (prepare-data
    # --native-rates: sampled like the sensor, row for row with the reference-rate windows and ECG)
    ref = reference_config(cfg)
    ds = ShardDataset(path, split="all", expected_config_hash=ref.config_hash())
    keys = np.char.add(np.char.add(ds.datasets.astype(str), "\x1f"), ds.subject_ids.astype(str))
    idx = _cap_per_subject(keys, max_candidates, rng)
    L = ref.window_samples
    if idx.size and ds.window_samples != L:
        raise ContractMismatchError(f"{path} holds windows of {ds.window_samples} samples, expected {L}")
    ppg, ecg = ds.get_batch(idx) if idx.size else (np.zeros((0, 1, L), np.float32),) * 2
    if is_native_rate(cfg):
        ppg = ds.get_ppg(idx, cfg.target_sample_rate_hz) if idx.size else np.zeros((0, 1, cfg.window_samples), np.float32)
    rejected: Counter = Counter()
    summary = path / "summary.json"
    if summary.is_file():
        try:
            rejected.update(json.loads(summary.read_text()).get("total", {}).get("rejected", {}))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"unreadable shard summary {summary}: {exc}") from exc
    k = idx.size
    pool = _Pool(
        np.ascontiguousarray(ppg[:, 0]),
        np.ascontiguousarray(ecg[:, 0]),
        np.ones(k, bool),
        np.full(k, name),
        ds.datasets[idx].astype(str),
        ds.subject_ids[idx].astype(str),
        np.asarray(ds.start_s[idx], np.float64),
    )
    return pool, rejected


def _resolve_sources(sources: Sequence[Source]) -> list[tuple[str, Any]]:
    """``[(name, spec)]``: spec is "shared", "simulator", a Path (shard folder) or a list of Recordings."""
    if isinstance(sources, str | os.PathLike) or not isinstance(sources, Sequence):
        raise TypeError(f"sources must be a list of sources, got {type(sources).__name__}")
    if len(sources) == 0:
        raise ValueError(
            "no calibration sources given (use 'shared', 'simulator', a shard folder or recordings)"
        )
    out: list[tuple[str, Any]] = []
    names: Counter = Counter()
    for src in sources:
        if isinstance(src, str) and src in ("shared", "simulator"):
            name, spec = src, src
        elif isinstance(src, str | os.PathLike):
            spec = Path(src).expanduser()
            name = f"shards:{spec}"
        elif isinstance(src, Sequence) and all(isinstance(r, Recording) for r in src):
            name, spec = "recordings", list(src)
        else:
            raise TypeError(
                f"unsupported calibration source {src!r}: expected 'shared', 'simulator', a shard folder "
                "path or a list of Recording"
            )
        names[name] += 1
        if names[name] > 1:
            if not isinstance(spec, list):
                raise ValueError(f"calibration source {name!r} given twice")
            name = f"{name}#{names[name]}"
        out.append((name, spec))
    return out


# --------------------------------------------------------------------------------------------------
# stratified selection
# --------------------------------------------------------------------------------------------------


def _select(
    subject: np.ndarray, hr_idx: np.ndarray, q_idx: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Balanced round-robin over strata (subject, HR bin, quality tertile); see the module docstring."""
    subj_u, subj_i = np.unique(subject, return_inverse=True)
    n_hr, n_q = len(HR_BIN_LABELS), len(QUALITY_LEVELS)
    code = (subj_i.astype(np.int64) * n_hr + hr_idx) * n_q + q_idx
    st_code, st_inv = np.unique(code, return_inverse=True)
    members = [rng.permutation(np.flatnonzero(st_inv == k)) for k in range(len(st_code))]
    st_subj = st_code // (n_hr * n_q)
    st_hr = (st_code // n_q) % n_hr
    st_q = st_code % n_q
    size = np.array([m.size for m in members])
    ptr = np.zeros(len(st_code), np.int64)
    tiebreak = rng.permutation(len(st_code))
    pool_hr = np.bincount(hr_idx, minlength=n_hr)
    pool_q = np.bincount(q_idx, minlength=n_q)
    c_subj = np.zeros(len(subj_u), np.int64)
    c_hr = np.zeros(n_hr, np.int64)
    c_q = np.zeros(n_q, np.int64)
    chosen: list[int] = []
    while len(chosen) < n:
        cand = np.flatnonzero(ptr < size)
        if cand.size == 0:
            break
        for cost in (
            lambda c: c_subj[st_subj[c]],
            lambda c: c_hr[st_hr[c]] + c_q[st_q[c]],
            lambda c: pool_hr[st_hr[c]] + pool_q[st_q[c]],
            lambda c: ptr[c],
        ):
            key = cost(cand)
            cand = cand[key == key.min()]
        k = int(cand[np.argmin(tiebreak[cand])])
        chosen.append(int(members[k][ptr[k]]))
        ptr[k] += 1
        c_subj[st_subj[k]] += 1
        c_hr[st_hr[k]] += 1
        c_q[st_q[k]] += 1
    return np.asarray(chosen, dtype=np.int64)


def _counts(values: np.ndarray, order: Sequence[str] | None = None) -> dict[str, int]:
    c = Counter(str(v) for v in values)
    keys = [k for k in order if k in c] if order is not None else sorted(c)
    return {k: int(c[k]) for k in keys}


def _coverage(pool_vals: np.ndarray, sel_vals: np.ndarray, max_listed: int = 50) -> dict[str, Any]:
    """How many distinct values the pool and the selection hold; the first ``max_listed`` missing ones."""
    pool, sel = set(map(str, pool_vals)), set(map(str, sel_vals))
    missing = sorted(pool - sel)
    return {
        "pool": len(pool),
        "selected": len(sel),
        "n_missing": len(missing),
        "missing": missing[:max_listed],
    }


# --------------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------------


def build_calibration_set(
    sources: Sequence[Source],
    n_windows: int = 256,
    seed: int = 0,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    hop_s: float = 5.0,
    progress: bool = True,
    *,
    ecg_quality: bool = True,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> CalibrationSet:
    """Build a stratified calibration set of ``n_windows`` preprocessed PPG windows.

    ``sources``: a list whose items are ``"shared"`` (the real recordings of the shared data folder,
    :func:`~anyppg_edge.data.load_shared_recordings`), ``"simulator"`` (the fixed simulated cohort
    :data:`SIMULATOR_COHORT`), the path of a shard folder made by ``anyppg-edge prepare-data`` (all
    splits; its windows were gated and cut when it was prepared, so ``hop_s`` and ``ecg_quality`` do
    not apply to it, and its config hash must be ``cfg``'s, else ContractMismatchError), or a list
    of :class:`~anyppg_edge.data.Recording` (a recording without an ``"ecg"`` channel contributes
    PPG-only windows, labelled from the PPG).

    Recordings are cut every ``hop_s`` seconds; with ``ecg_quality`` windows whose ECG fails Zhao
    2018 are dropped like in :func:`~anyppg_edge.data.windows.extract_windows`. At most
    ``max_candidates`` windows, spread evenly over subjects, are labelled and stratified (see the
    module docstring). Returns fewer than ``n_windows`` windows (``manifest["count"]`` <
    ``manifest["requested"]``) only when the pool is smaller.
    """
    if int(n_windows) != n_windows or n_windows < 1:
        raise ValueError(f"n_windows must be an integer >= 1, got {n_windows!r}")
    if hop_s <= 0:
        raise ValueError(f"hop_s must be > 0 s, got {hop_s}")
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
    n_windows = int(n_windows)
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    fs = float(cfg.target_sample_rate_hz)
    resolved = _resolve_sources(sources)
    parts: list[_Pool] = []
    rejected: Counter = Counter()
    rejected_by_source: dict[str, dict[str, int]] = {}
    extras: dict[str, Any] = {}
    for name, spec in resolved:
        if spec == "shared":
            from anyppg_edge.data import load_shared_recordings

            part, rej = _pool_from_recordings(
                load_shared_recordings(), name, cfg, hop_s, ecg_quality, progress
            )
        elif spec == "simulator":
            from anyppg_edge.data import simulate_cohort

            recs = simulate_cohort(
                SIMULATOR_COHORT["n_subjects"], SIMULATOR_COHORT["duration_s"], SIMULATOR_COHORT["seed"]
            )
            extras["simulator"] = dict(SIMULATOR_COHORT)
            part, rej = _pool_from_recordings(recs, name, cfg, hop_s, ecg_quality, progress)
        elif isinstance(spec, Path):
            part, rej = _pool_from_shards(spec, name, cfg, max_candidates, rng)
        else:
            part, rej = _pool_from_recordings(spec, name, cfg, hop_s, ecg_quality, progress)
        if progress:
            print(
                f"calibration: {name}: {len(part)} candidate windows, rejected {dict(rej) or '-'}",
                file=sys.stderr,
            )
        parts.append(part)
        rejected.update(rej)
        rejected_by_source[name] = dict(sorted(rej.items()))
    pool = _Pool.concat(parts, cfg.window_samples, reference_config(cfg).window_samples)
    n_extracted = len(pool)
    keys = np.char.add(np.char.add(pool.dataset.astype(str), ":"), pool.subject_id.astype(str))
    cap = _cap_per_subject(keys, max_candidates, rng)
    pool, keys = pool.take(cap), keys[cap]
    if len(pool) == 0:
        raise DataFormatError(
            f"no usable windows in calibration sources {[n for n, _ in resolved]} "
            f"(rejected: {dict(rejected)})"
        )

    hr, hr_source = _label_heart_rates(pool, cfg)
    quality = ppg_quality(pool.ppg, hr, fs=fs)
    q_edges = np.quantile(quality, [1 / 3, 2 / 3])
    q_idx = np.digitize(quality, q_edges, right=True)
    hr_idx = np.digitize(hr, HR_BIN_EDGES_BPM)
    chosen = _select(keys, hr_idx, q_idx, n_windows, rng)

    hr_bin = np.asarray(HR_BIN_LABELS)[hr_idx]
    q_level = np.asarray(QUALITY_LEVELS)[q_idx]
    stratum = np.char.add(np.char.add(np.char.add(keys, "|"), np.char.add(hr_bin, " bpm|q-")), q_level)
    windows = np.ascontiguousarray(pool.ppg[chosen], dtype=np.float32)
    cs = CalibrationSet(
        windows=windows,
        source=pool.source[chosen].astype(str),
        dataset=pool.dataset[chosen].astype(str),
        subject_id=pool.subject_id[chosen].astype(str),
        start_s=pool.start_s[chosen].astype(np.float64),
        hr_bpm=hr[chosen].astype(np.float64),
        hr_source=hr_source[chosen].astype(str),
        quality=quality[chosen].astype(np.float64),
        hr_bin=hr_bin[chosen].astype(str),
        quality_level=q_level[chosen].astype(str),
        stratum=stratum[chosen].astype(str),
    )
    cs.manifest = {
        "schema": CALIBRATION_SCHEMA,
        "created_by": __version__,
        "sources": [n for n, _ in resolved],
        "seed": int(seed),
        "requested": n_windows,
        "count": len(cs),
        "window_samples": cs.window_samples,
        "sample_rate_hz": cfg.target_sample_rate_hz,
        "dtype": "float32",
        "shape": [len(cs), cs.window_samples],
        "sha256": windows_sha256(windows),
        "meta_sha256": hashlib.sha256(_meta_bytes(cs.meta_columns())).hexdigest(),
        "preprocess_config_hash": cfg.config_hash(),
        "preprocess": cfg.to_dict(),
        "hop_s": float(hop_s),
        "ecg_quality": bool(ecg_quality),
        "max_candidates": int(max_candidates),
        "rejected": dict(sorted(rejected.items())),
        "rejected_by_source": rejected_by_source,
        "candidates": {"extracted": n_extracted, "labelled": len(pool), "by_dataset": _counts(pool.dataset)},
        "hr_bins_bpm": {"edges": list(HR_BIN_EDGES_BPM), "labels": list(HR_BIN_LABELS)},
        "hr_sources": "ecg-rpeaks: neurokit2 R peaks of the window's ECG (60 / median RR, 30-240 bpm); "
        "ppg-spectral: Welch spectral peak of the PPG, 0.7-3.5 Hz (no ECG or no valid R-peak HR)",
        "quality_definition": (
            f"fraction of the PPG window's Welch power in {QUALITY_BAND_HZ[0]}-{QUALITY_BAND_HZ[1]} Hz "
            f"within +/-{QUALITY_HALF_WIDTH_HZ} Hz of hr_bpm/60 or 2*hr_bpm/60 (nfft {QUALITY_NFFT})"
        ),
        "quality_tertile_edges": [float(e) for e in q_edges],
        "counts": {
            "dataset": _counts(cs.dataset),
            "subject": _counts(cs.subject_id),
            "hr_bin": _counts(cs.hr_bin, HR_BIN_LABELS),
            "quality": _counts(cs.quality_level, QUALITY_LEVELS),
            "hr_source": _counts(cs.hr_source, HR_SOURCES),
            "source": _counts(cs.source),
        },
        "coverage": {
            "subject": _coverage(keys, keys[chosen]),
            "hr_bin": _coverage(hr_bin, cs.hr_bin),
            "quality": _coverage(q_level, cs.quality_level),
            "strata": _coverage(stratum, cs.stratum),
        },
        "files": [WINDOWS_FILE, META_FILE, MANIFEST_FILE],
        **({"native_rate": NATIVE_RATE_NOTE} if is_native_rate(cfg) else {}),
        **extras,
    }
    if progress:
        print(
            f"calibration: {len(cs)} windows from {len(pool)} candidates "
            f"in {time.perf_counter() - t_start:.1f} s",
            file=sys.stderr,
        )
    return cs


def _label_heart_rates(pool: _Pool, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """The HR labels under :data:`HR_POLICY`: ECG R peaks at the reference rate (the pool's ECG), then
    the PPG spectral peak at the model's rate (a native-rate pool's PPG is at the sensor's rate)."""
    fs, fs_ecg = float(cfg.target_sample_rate_hz), float(reference_config(cfg).target_sample_rate_hz)
    if fs == fs_ecg:
        return reference_heart_rates(pool.start_s, ecg=pool.ecg, ppg=pool.ppg, has_ecg=pool.has_ecg,
                                     sample_rate_hz=fs, window_s=cfg.window_s, policy=HR_POLICY)
    import dataclasses

    hr, src = reference_heart_rates(pool.start_s, ecg=pool.ecg, has_ecg=pool.has_ecg, sample_rate_hz=fs_ecg,
                                    window_s=cfg.window_s, policy=dataclasses.replace(HR_POLICY, ppg_fallback=False))
    need = ~np.isfinite(hr)
    if need.any():
        h2, s2 = reference_heart_rates(pool.start_s[need], ppg=pool.ppg[need], sample_rate_hz=fs,
                                       window_s=cfg.window_s, policy=HR_POLICY)
        hr[need] = h2
        src = src.astype(object)
        src[need] = s2
        src = src.astype(str)
    return hr, src


def build_default_calibration_set(
    cfg: PreprocessConfig = DEFAULT_CONFIG, progress: bool = False
) -> CalibrationSet:
    """The default set (:data:`DEFAULT_SOURCES`, :data:`DEFAULT_N_WINDOWS` windows, :data:`DEFAULT_SEED`),
    built from scratch."""
    return build_calibration_set(
        list(DEFAULT_SOURCES), DEFAULT_N_WINDOWS, DEFAULT_SEED, cfg, DEFAULT_HOP_S, progress
    )



def load_default_calibration_set(cfg: PreprocessConfig = DEFAULT_CONFIG) -> CalibrationSet:
    """The committed default set, verified; rebuilt from the simulator (deterministically, not written
    to disk) when the folder is absent. A committed default made for another preprocessing config than
    ``cfg`` is a ContractMismatchError, and so is a native-rate ``cfg`` (its windows must be sampled
    like the sensor, which the committed 125 Hz set is not)."""
    if is_native_rate(cfg):
        raise ContractMismatchError(
            f"the committed default calibration set holds {DEFAULT_CONFIG.target_sample_rate_hz} Hz windows, but this "
            f"model's contract is a native-rate one ({cfg.target_sample_rate_hz} Hz, {cfg.window_samples} samples): "
            "its calibration windows must be sampled like its sensor, never resampled from 125 Hz. Use "
            "`--calibration shared` (built from ../shared through anyppg_edge.data.native_rate.model_input_recording) "
            "or a calibration folder built for this contract"
        )
    d = default_calibration_dir()
    if (d / MANIFEST_FILE).is_file():
        return load_calibration_set(d, cfg)
    return build_default_calibration_set(cfg)



def _bar(items: Sequence[Any], enabled: bool, desc: str) -> Any:
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=desc, unit="rec", file=sys.stderr)
