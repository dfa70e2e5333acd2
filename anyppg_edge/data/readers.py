"""Readers for the recording formats the project meets, each returning a :class:`Recording`.

* IEEE Signal Processing Cup 2015 (TROIKA) ``.mat`` files (``sig`` 6 x N at 125 Hz);
* BIDMC ``*_Signals.csv`` (rate taken from the ``Time [s]`` column, checked to be uniform);
* NeuroKit2 example CSVs (no time column: the rate is given);
* PhysioNet WFDB records (``wfdb``), EDF/EDF+ files (``edfio``: MESA, CFS, HSP sleep cohorts),
  with automatic choice of the PPG and ECG channels by their usual names;
* the project's own ``.npz`` recording format (:func:`write_npz` / :func:`read_npz`).

Every failure a user can cause with a bad file is a :class:`DataFormatError` naming the file and
what was wrong with it. ``wfdb`` and ``edfio`` are imported only when those formats are read.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.data.recording import ECG, PPG, Channel, Recording
from anyppg_edge.errors import AnyPPGError, DataFormatError
from anyppg_edge.paths import shared_dir

# Plausible sampling rates for physiological signals (Hz); outside this a time column is wrong.
MIN_PLAUSIBLE_RATE_HZ = 1.0
MAX_PLAUSIBLE_RATE_HZ = 20_000.0

IEEE_SPC2015_RATE_HZ = 125.0
IEEE_HR_WINDOW_S = 8.0
IEEE_HR_STEP_S = 2.0
_IEEE_ROWS = ("ecg", "ppg", "ppg2", "acc_x", "acc_y", "acc_z")

NPZ_FORMAT = "anyppg_edge.recording.v1"

# Channel labels (after _slug) recognised as PPG / ECG, in order of preference.
PPG_LABELS = ("pleth", "ppg", "plethysmogram", "ppg_green", "ppg_ir", "ppg_red", "photopleth")
ECG_LABELS = (
    "ii", "ecg_ii", "ekg_ii", "mlii", "ecg", "ekg", "ecg1", "ecg_1", "ekg1", "ekg_1",
    "ecg_l", "ekg_l", "ecg2", "ecg_2", "ekg2", "ekg_2", "ecg_i", "i",
)  # fmt: skip


# ----------------------------------------------------------------------------- helpers


def _require_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataFormatError(f"recording file not found: {p}")
    return p


def _slug(label: str) -> str:
    """``"ECG II"`` -> ``"ecg_ii"``, ``"SpO2"`` -> ``"spo2"``."""
    return re.sub(r"[^0-9a-z]+", "_", label.strip().lower()).strip("_")


def _unique(name: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    if name not in taken:
        return name
    k = 2
    while f"{name}_{k}" in taken:
        k += 1
    return f"{name}_{k}"


def _pick(
    labels: list[str],
    explicit: str | None,
    preferred: tuple[str, ...],
    fallback: tuple[str, ...],
    kind: str,
    path: Path,
    exclude: set[int],
) -> int | None:
    """Index of the channel to use as ``kind``: the explicit label if given (exact, then
    case-insensitive/slug match), else the first label in ``preferred`` order, else the first whose
    slug starts with one of ``fallback``."""
    if explicit is not None:
        for i, lab in enumerate(labels):
            if lab == explicit:
                return i
        for i, lab in enumerate(labels):
            if _slug(lab) == _slug(explicit):
                return i
        raise DataFormatError(
            f"{path}: no channel {explicit!r} for {kind}; available: {', '.join(map(repr, labels))}"
        )
    slugs = [_slug(lab) for lab in labels]
    for want in preferred:
        for i, s in enumerate(slugs):
            if s == want and i not in exclude:
                return i
    for i, s in enumerate(slugs):
        if i not in exclude and s.startswith(fallback):
            return i
    return None


def _name_channels(
    labels: list[str], ppg_channel: str | None, ecg_channel: str | None, require: Iterable[str], path: Path
) -> list[str]:
    """Canonical names for a file's channel labels: the chosen PPG -> "ppg", ECG -> "ecg",
    others -> their slug (made unique)."""
    i_ppg = _pick(labels, ppg_channel, PPG_LABELS, ("pleth", "ppg"), "PPG", path, set())
    i_ecg = _pick(
        labels, ecg_channel, ECG_LABELS, ("ecg", "ekg"), "ECG", path, {i_ppg} if i_ppg is not None else set()
    )
    if i_ppg is not None and i_ppg == i_ecg:
        raise DataFormatError(f"{path}: channel {labels[i_ppg]!r} chosen as both PPG and ECG")
    missing = [k for k, i in ((PPG, i_ppg), (ECG, i_ecg)) if k in set(require) and i is None]
    if missing:
        raise DataFormatError(
            f"{path}: no {' or '.join(m.upper() for m in missing)} channel found "
            f"(looked for labels like {PPG_LABELS[:3] if PPG in missing else ECG_LABELS[:6]}); "
            f"available: {', '.join(map(repr, labels))}; pass ppg_channel=/ecg_channel= to choose"
        )
    names: list[str | None] = [None] * len(labels)
    if i_ppg is not None:
        names[i_ppg] = PPG
    if i_ecg is not None:
        names[i_ecg] = ECG
    taken = {n for n in names if n}
    for i, lab in enumerate(labels):
        if names[i] is None:
            base = _slug(lab) or f"ch{i}"
            names[i] = _unique(base, taken)
            taken.add(names[i])
    return [str(n) for n in names]


def _quantum(t: np.ndarray) -> np.ndarray:
    """Printed resolution of each time value (0.008 -> 1e-3, 100.01 -> 1e-2). Integer values say
    nothing about the resolution, so they take the finer resolution of their neighbours."""
    q = np.full(t.shape, 1e-9)
    found = np.zeros(t.shape, dtype=bool)
    for k in range(10):
        scaled = t * 10.0**k
        ok = ~found & (np.abs(scaled - np.round(scaled)) <= 1e-7 * np.maximum(1.0, np.abs(scaled)))
        q[ok] = 10.0**-k
        found |= ok
    integer = q >= 1.0
    if integer.any() and not integer.all():
        qn = np.where(integer, np.inf, q)
        left = np.concatenate([[np.inf], qn[:-1]])
        right = np.concatenate([qn[1:], [np.inf]])
        neighbour = np.minimum(left, right)
        q = np.where(integer & np.isfinite(neighbour), neighbour, q)
    return q


def rate_from_time_column(t: np.ndarray, source: str = "time column") -> float:
    """Sample rate (Hz) of a time column in seconds, checked to be uniform.

    Time columns are often printed with few digits (BIDMC prints 5 significant digits, so after
    100 s the times step 0.01, 0.01, 0.00, ...): each value must lie on the uniform grid within half
    of its printed resolution. A rate within 0.1 % of an integer is snapped to it."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < 3:
        raise DataFormatError(f"{source}: need at least 3 time values, got {t.size}")
    if not np.isfinite(t).all():
        raise DataFormatError(
            f"{source}: time column contains NaN/inf at row {int(np.argmin(np.isfinite(t)))}"
        )
    dt = np.diff(t)
    if (dt < 0).any():
        i = int(np.argmax(dt < 0))
        raise DataFormatError(
            f"{source}: time column is not increasing (row {i + 1}: {t[i + 1]} after {t[i]})"
        )
    span = t[-1] - t[0]
    if span <= 0:
        raise DataFormatError(f"{source}: time column does not advance (all values {t[0]})")
    fs_est = (t.size - 1) / span
    if not MIN_PLAUSIBLE_RATE_HZ <= fs_est <= MAX_PLAUSIBLE_RATE_HZ:
        raise DataFormatError(
            f"{source}: implausible sampling rate {fs_est:.6g} Hz from the time column "
            f"(expected {MIN_PLAUSIBLE_RATE_HZ:g}-{MAX_PLAUSIBLE_RATE_HZ:g} Hz; is it in seconds?)"
        )
    q = _quantum(t)
    tol = 0.5 * q + 0.5 * q[0] + 1e-9 * np.maximum(1.0, np.abs(t))
    idx = np.arange(t.size)
    candidates = [fs_est]
    if round(fs_est) > 0 and abs(fs_est / round(fs_est) - 1.0) < 1e-3:
        candidates.insert(0, float(round(fs_est)))
    worst = None
    for fs in candidates:
        resid = t - (t[0] + idx / fs)
        bad = np.abs(resid) > tol
        if not bad.any():
            return fs
        if worst is None:
            i = int(np.argmax(np.abs(resid) - tol))
            worst = (i, resid[i])
    assert worst is not None
    i, r = worst
    raise DataFormatError(
        f"{source}: time column is not uniformly sampled at ~{fs_est:.6g} Hz: row {i} has "
        f"t={t[i]:.6g} s, {r * 1e3:+.3g} ms off the uniform grid (gap or jitter)"
    )


def _read_csv_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Header names (whitespace stripped) and the numeric table of a comma-separated file."""
    try:
        with path.open("r", newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
        if not header or not any(h.strip() for h in header):
            raise DataFormatError(f"{path}: empty CSV file or missing header line")
        names = [h.strip() for h in header]
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64, encoding="utf-8-sig")
    except DataFormatError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataFormatError(f"corrupt or unparsable CSV file {path}: {exc}") from exc
    if table.shape[0] < 2:
        raise DataFormatError(f"{path}: CSV has {table.shape[0]} data rows; need at least 2")
    if table.shape[1] != len(names):
        raise DataFormatError(
            f"{path}: header names {len(names)} columns ({', '.join(names)}) but rows have {table.shape[1]}"
        )
    if len(set(names)) != len(names):
        raise DataFormatError(f"{path}: duplicate column names in header: {names}")
    return names, table


def _table_to_channels(
    names: list[str],
    table: np.ndarray,
    mapping: Mapping[str, str],
    required: Iterable[str],
    rate_hz: float,
    unit: str,
    path: Path,
    skip: Iterable[str] = (),
) -> dict[str, Channel]:
    upper = {n.upper(): i for i, n in enumerate(names)}
    missing = [r for r in required if r.upper() not in upper]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {', '.join(missing)}; available: {', '.join(names)}"
        )
    skip_upper = {s.upper() for s in skip}
    channels: dict[str, Channel] = {}
    # Mapped columns first so the canonical names "ppg"/"ecg" are never taken by a slug.
    order = sorted(range(len(names)), key=lambda i: names[i].upper() not in mapping)
    for i in order:
        col = names[i]
        if col.upper() in skip_upper:
            continue
        name = _unique(mapping.get(col.upper()) or _slug(col) or f"col{i}", channels)
        channels[name] = Channel(table[:, i].copy(), rate_hz, unit)
    return {n: channels[n] for n in sorted(channels, key=lambda n: (n != PPG, n != ECG))}


# ----------------------------------------------------------------------------- IEEE SPC 2015


def _loadmat(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types on truncated/corrupt files
        raise DataFormatError(
            f"corrupt or truncated MATLAB file {path}: {type(exc).__name__}: {exc}"
        ) from exc


def read_ieee_spc2015(mat_path: str | Path) -> Recording:
    """One IEEE SPC 2015 (TROIKA) training recording: ``ecg`` (chest), ``ppg``/``ppg2`` (wrist,
    green), ``acc_x/y/z`` (wrist accelerometer), all 125 Hz. The ECG/PPG are raw ADC counts (unit
    ``"adc"``); the accelerometer is in g (it saturates at +/-4 g). The test-set layout (5 rows, no
    ECG) is accepted too. ``meta["hr_bpm_trace"]`` is the sibling ``*_BPMtrace.mat``'s ``BPM0``
    (ECG heart rate for windows of ``meta["hr_trace_window_s"]`` = 8 s every
    ``meta["hr_trace_step_s"]`` = 2 s, window k covering [2k, 2k + 8) s)."""
    path = _require_file(mat_path)
    mat = _loadmat(path)
    if "sig" not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise DataFormatError(f"{path}: no variable 'sig' in the .mat file; it holds: {keys}")
    sig = mat["sig"]
    if not isinstance(sig, np.ndarray) or sig.dtype.kind not in "iuf":
        raise DataFormatError(f"{path}: 'sig' must be a numeric matrix, got {type(sig).__name__}")
    if sig.ndim != 2 or sig.shape[0] not in (5, 6) or sig.shape[1] < 2:
        raise DataFormatError(
            f"{path}: 'sig' has shape {sig.shape}; expected (6, N) "
            "(rows: ECG, PPG1, PPG2, acc x/y/z) or (5, N) without the ECG"
        )
    rows = _IEEE_ROWS if sig.shape[0] == 6 else _IEEE_ROWS[1:]
    channels = {
        name: Channel(
            np.asarray(sig[i], dtype=np.float64).copy(),
            IEEE_SPC2015_RATE_HZ,
            "g" if name.startswith("acc") else "adc",
        )
        for i, name in enumerate(rows)
    }
    # put ppg first for readability
    channels = {n: channels[n] for n in sorted(channels, key=lambda n: (n != PPG, n != ECG))}
    stem = path.stem
    m = re.match(r"(DATA_\d+|TEST_S\d+)(?:_(T\w+))?", stem)
    subject = m.group(1) if m else stem
    meta: dict[str, Any] = {"source_file": str(path)}
    if m and m.group(2):
        meta["activity_type"] = m.group(2)
    trace_path = path.with_name(f"{stem}_BPMtrace.mat")
    if trace_path.is_file():
        tmat = _loadmat(trace_path)
        if "BPM0" not in tmat:
            keys = [k for k in tmat if not k.startswith("__")]
            raise DataFormatError(f"{trace_path}: no variable 'BPM0'; it holds: {keys}")
        meta["hr_bpm_trace"] = np.asarray(tmat["BPM0"], dtype=np.float64).ravel()
        meta["hr_trace_window_s"] = IEEE_HR_WINDOW_S
        meta["hr_trace_step_s"] = IEEE_HR_STEP_S
    return Recording(f"ieee_spc2015/{subject}", "ieee_spc2015", channels, meta)


# ----------------------------------------------------------------------------- CSV formats

_BIDMC_MAP = {"PLETH": PPG, "II": ECG, "RESP": "resp", "V": "ecg_v", "AVR": "ecg_avr"}
_NEUROKIT_MAP = {"PPG": PPG, "ECG": ECG, "RSP": "resp"}


def _time_column(names: list[str]) -> int | None:
    for i, n in enumerate(names):
        if n.lower().startswith("time"):
            return i
    return None


def read_bidmc_csv(path: str | Path) -> Recording:
    """A BIDMC ``bidmc_NN_Signals.csv``: ``ppg`` = PLETH, ``ecg`` = II, ``resp`` = RESP, plus the
    other ECG leads as ``ecg_v``/``ecg_avr``; values are the dataset's normalised units. The rate
    comes from the ``Time [s]`` column, which must be uniform."""
    p = _require_file(path)
    names, table = _read_csv_table(p)
    it = _time_column(names)
    if it is None:
        raise DataFormatError(f"{p}: no time column ('Time [s]'); columns: {', '.join(names)}")
    fs = rate_from_time_column(table[:, it], source=str(p))
    channels = _table_to_channels(names, table, _BIDMC_MAP, ("PLETH", "II"), fs, "a.u.", p, skip=(names[it],))
    m = re.match(r"(bidmc_\d+)", p.stem)
    subject = m.group(1) if m else p.stem
    return Recording(f"bidmc/{subject}", "bidmc", channels, {"source_file": str(p)})


def read_neurokit_csv(path: str | Path, sample_rate_hz: float | None = 100.0) -> Recording:
    """A NeuroKit2 example CSV (columns ``ECG``, ``PPG``, ``RSP``, ...; no time column, so the rate
    is given: 100 Hz for ``bio_resting_5min_100hz.csv``). If the file does have a time column its
    rate is checked against ``sample_rate_hz`` (or used, when that is None)."""
    p = _require_file(path)
    names, table = _read_csv_table(p)
    it = _time_column(names)
    skip: tuple[str, ...] = ()
    if it is not None:
        fs_t = rate_from_time_column(table[:, it], source=str(p))
        if sample_rate_hz is not None and abs(fs_t / float(sample_rate_hz) - 1) > 1e-3:
            raise DataFormatError(f"{p}: time column says {fs_t:g} Hz but sample_rate_hz={sample_rate_hz:g}")
        sample_rate_hz = fs_t
        skip = (names[it],)
    if sample_rate_hz is None:
        raise DataFormatError(f"{p}: no time column, so sample_rate_hz must be given")
    channels = _table_to_channels(
        names, table, _NEUROKIT_MAP, ("PPG", "ECG"), float(sample_rate_hz), "a.u.", p, skip=skip
    )
    return Recording(f"neurokit/{p.stem}", "neurokit", channels, {"source_file": str(p)})


# ----------------------------------------------------------------------------- WFDB / EDF


def read_wfdb(
    record_path: str | Path,
    ppg_channel: str | None = None,
    ecg_channel: str | None = None,
    require: Iterable[str] = (PPG, ECG),
) -> Recording:
    """A PhysioNet WFDB record (``record_path`` with or without ``.hea``/``.dat``). The PPG and
    ECG are picked by name (PLETH/PPG/..., II/ECG/MLII/...) unless given; other channels keep
    their slugged names. Multi-frequency records keep per-channel rates (fs x samples per frame).
    ``require`` lists the canonical channels that must be found."""
    p = Path(record_path).expanduser()
    base = p.with_suffix("") if p.suffix in (".hea", ".dat") else p
    header = Path(str(base) + ".hea")
    if not header.is_file():
        raise DataFormatError(f"WFDB record not found: {header}")
    import wfdb

    try:
        rec = wfdb.rdrecord(str(base), smooth_frames=False)
    except Exception as exc:
        raise DataFormatError(
            f"corrupt or unreadable WFDB record {base}: {type(exc).__name__}: {exc}"
        ) from exc
    labels = list(rec.sig_name or [])
    if not labels or rec.e_p_signal is None:
        raise DataFormatError(f"{base}: WFDB record has no signals")
    names = _name_channels(labels, ppg_channel, ecg_channel, require, base)
    spf = rec.samps_per_frame or [1] * len(labels)
    units = rec.units or [""] * len(labels)
    channels = {
        name: Channel(np.asarray(rec.e_p_signal[i], dtype=np.float64), float(rec.fs) * spf[i], units[i] or "")
        for i, name in enumerate(names)
    }
    channels = {n: channels[n] for n in sorted(channels, key=lambda n: (n != PPG, n != ECG))}
    meta = {"source_file": str(header), "channel_labels": dict(zip(names, labels, strict=True))}
    return Recording(f"wfdb/{base.name}", "wfdb", channels, meta)


def read_edf(
    path: str | Path,
    ppg_channel: str | None = None,
    ecg_channel: str | None = None,
    require: Iterable[str] = (PPG, ECG),
) -> Recording:
    """An EDF/EDF+ file. Signals keep their own rates; the PPG (Pleth/PPG/...) and ECG
    (EKG/ECG/ECG1/II/...) are picked by label unless given; annotations are not channels."""
    p = _require_file(path)
    import edfio

    try:
        edf = edfio.read_edf(p, lazy_load_data=False)
        signals = list(edf.signals)
        labels = [s.label for s in signals]
        arrays = [np.asarray(s.data, dtype=np.float64) for s in signals]
        rates = [float(s.sampling_frequency) for s in signals]
        units = [s.physical_dimension or "" for s in signals]
    except Exception as exc:
        raise DataFormatError(f"corrupt or truncated EDF file {p}: {type(exc).__name__}: {exc}") from exc
    if not signals:
        raise DataFormatError(f"{p}: EDF file has no signals")
    names = _name_channels(labels, ppg_channel, ecg_channel, require, p)
    channels = {name: Channel(arrays[i], rates[i], units[i]) for i, name in enumerate(names)}
    channels = {n: channels[n] for n in sorted(channels, key=lambda n: (n != PPG, n != ECG))}
    meta = {"source_file": str(p), "channel_labels": dict(zip(names, labels, strict=True))}
    return Recording(f"edf/{p.stem}", "edf", channels, meta)


# ----------------------------------------------------------------------------- NPZ


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def write_npz(recording: Recording, path: str | Path) -> Path:
    """Write ``recording`` to ``path`` (written exactly there, suffix untouched). Top-level
    ``meta`` values that are numpy arrays are stored as arrays; the rest must be JSON-serialisable."""
    p = Path(path).expanduser()
    arrays: dict[str, np.ndarray] = {
        "format": np.array(NPZ_FORMAT),
        "subject_id": np.array(recording.subject_id),
        "dataset": np.array(recording.dataset),
        "channel_names": np.array(list(recording.channels), dtype=str),
        "sample_rates_hz": np.array([c.sample_rate_hz for c in recording.channels.values()]),
        "units": np.array([c.unit for c in recording.channels.values()], dtype=str),
    }
    for i, ch in enumerate(recording.channels.values()):
        arrays[f"channel_{i}"] = ch.data
    plain: dict[str, Any] = {}
    array_keys: list[str] = []
    for key, val in recording.meta.items():
        if isinstance(val, np.ndarray):
            if val.dtype.kind not in "biufcUS":
                raise DataFormatError(f"meta[{key!r}] has dtype {val.dtype}; cannot store without pickle")
            arrays[f"meta_array_{len(array_keys)}"] = val
            array_keys.append(str(key))
        else:
            plain[str(key)] = val
    arrays["meta_array_keys"] = np.array(array_keys, dtype=str)
    try:
        arrays["meta_json"] = np.array(json.dumps(plain, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"recording meta cannot be written to {p}: {exc}") from exc
    with p.open("wb") as fh:
        np.savez(fh, **arrays)
    return p


def read_npz(path: str | Path) -> Recording:
    """Read a recording written by :func:`write_npz` (never unpickles)."""
    p = _require_file(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != NPZ_FORMAT:
                raise DataFormatError(f"{p}: not an anyppg-edge recording file (no format {NPZ_FORMAT!r})")
            names = [str(n) for n in z["channel_names"]]
            rates = z["sample_rates_hz"]
            units = [str(u) for u in z["units"]]
            if not (len(names) == len(rates) == len(units)):
                raise DataFormatError(f"{p}: channel_names/sample_rates_hz/units lengths differ")
            channels = {n: Channel(z[f"channel_{i}"], float(rates[i]), units[i]) for i, n in enumerate(names)}
            meta: dict[str, Any] = json.loads(str(z["meta_json"]))
            for j, key in enumerate(z["meta_array_keys"]):
                meta[str(key)] = z[f"meta_array_{j}"]
            return Recording(str(z["subject_id"]), str(z["dataset"]), channels, meta)
    except AnyPPGError as exc:
        if isinstance(exc, DataFormatError):
            raise
        raise DataFormatError(f"{p}: invalid recording: {exc}") from exc
    except Exception as exc:  # BadZipFile, KeyError, ValueError (pickled arrays), EOFError, ...
        raise DataFormatError(
            f"corrupt or truncated recording file {p}: {type(exc).__name__}: {exc}"
        ) from exc


# ----------------------------------------------------------------------------- dispatch

FORMATS = ("ieee_spc2015", "bidmc", "neurokit", "wfdb", "edf", "npz")


def _sniff_csv(p: Path) -> str:
    try:
        with p.open("r", newline="", encoding="utf-8-sig") as fh:
            header = {h.strip().upper() for h in next(csv.reader(fh), [])}
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"corrupt or unparsable CSV file {p}: {exc}") from exc
    if "PLETH" in header:
        return "bidmc"
    if "PPG" in header or "ECG" in header:
        return "neurokit"
    raise DataFormatError(
        f"{p}: cannot tell the CSV layout from its header {sorted(header)} "
        "(expected BIDMC 'PLETH'/'II' or NeuroKit 'PPG'/'ECG' columns); pass format="
    )


def read_recording(path: str | Path, format: str | None = None, **kw: Any) -> Recording:
    """Read any supported file; the format is chosen from the suffix (``.mat``, ``.csv`` by its
    header, ``.edf``, ``.hea``/``.dat`` or a WFDB base name, ``.npz``) unless ``format`` (one of
    :data:`FORMATS`) is given. Extra keywords go to the reader."""
    p = Path(path).expanduser()
    if format is None:
        suffix = p.suffix.lower()
        if suffix in (".hea", ".dat") or (not p.exists() and Path(str(p) + ".hea").is_file()):
            format = "wfdb"
        else:
            _require_file(p)
            if suffix == ".mat":
                format = "ieee_spc2015"
            elif suffix == ".csv":
                format = _sniff_csv(p)
            elif suffix in (".edf", ".rec"):
                format = "edf"
            elif suffix == ".npz":
                format = "npz"
            else:
                raise DataFormatError(
                    f"{p}: unknown recording format {suffix!r}; supported: .mat, .csv, .edf, "
                    ".hea/.dat (WFDB), .npz — or pass format= one of " + ", ".join(FORMATS)
                )
    readers = {
        "ieee_spc2015": read_ieee_spc2015,
        "bidmc": read_bidmc_csv,
        "neurokit": read_neurokit_csv,
        "wfdb": read_wfdb,
        "edf": read_edf,
        "npz": read_npz,
    }
    if format not in readers:
        raise DataFormatError(f"unknown format {format!r}; supported: {', '.join(FORMATS)}")
    return readers[format](p, **kw)


# ----------------------------------------------------------------------------- shared data

N_IEEE_SPC2015 = 8
BIDMC_SHARED = "bidmc/bidmc_01_Signals.csv"
NEUROKIT_SHARED = "neurokit_resting/bio_resting_5min_100hz.csv"


def load_shared_recordings(root: str | Path | None = None) -> list[Recording]:
    """The 10 real recordings of the shared data folder: IEEE SPC 2015 DATA_01..08, BIDMC 01 and
    the NeuroKit resting recording, in that order. ``root`` is the shared folder (holding
    ``data/``) or the ``data`` folder itself; default :func:`shared_dir`. A missing folder or file
    is a :class:`DataFormatError`, never a silent skip."""
    base = Path(root).expanduser() if root is not None else shared_dir()
    data = base / "data" if (base / "data").is_dir() else base
    if not (data / "ieee_spc2015").is_dir():
        raise DataFormatError(
            f"shared data folder not found: {data} (expected ieee_spc2015/, bidmc/, "
            "neurokit_resting/ inside; set ANYPPG_SHARED)"
        )
    mats = sorted(f for f in (data / "ieee_spc2015").glob("DATA_*.mat") if not f.stem.endswith("_BPMtrace"))
    if len(mats) != N_IEEE_SPC2015:
        raise DataFormatError(
            f"{data / 'ieee_spc2015'}: expected {N_IEEE_SPC2015} DATA_xx_TYPEyy.mat files, "
            f"found {len(mats)}: {[m.name for m in mats]}"
        )
    recs = [read_ieee_spc2015(m) for m in mats]
    recs.append(read_bidmc_csv(data / BIDMC_SHARED))
    recs.append(read_neurokit_csv(data / NEUROKIT_SHARED, sample_rate_hz=100.0))
    return recs
