"""Paired 10 s PPG/ECG model-input windows cut from recordings, with per-window quality flags.

This is the offline path every later stage builds on (data shards, calibration sets, the parity
suite): each window goes through exactly the reference chain of :mod:`anyppg_edge.preprocessing`,
and a window that fails a check is flagged with the reason and never silently passed to a model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.recording import Recording
from anyppg_edge.errors import ConfigError, InvalidSignalError


@dataclass
class WindowSet:
    """Preprocessed windows ``[N, window_samples]`` (float32, 125 Hz) with their provenance."""

    ppg: np.ndarray
    ecg: np.ndarray
    subject_id: np.ndarray  # [N] str
    dataset: np.ndarray  # [N] str
    start_s: np.ndarray  # [N] float64, window start within its recording
    rejected: Counter = field(default_factory=Counter)  # reason -> count of windows dropped
    # the record-level ECG polarity vote (see :func:`polarity_vote`); empty for concatenated sets
    polarity: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ppg)

    @classmethod
    def empty(cls, window_samples: int) -> WindowSet:
        z = np.zeros((0, window_samples), np.float32)
        return cls(z, z.copy(), np.zeros(0, str), np.zeros(0, str), np.zeros(0))

    @classmethod
    def concat(cls, parts: list[WindowSet]) -> WindowSet:
        if not parts:
            raise ConfigError("nothing to concatenate")
        rejected: Counter = Counter()
        for p in parts:
            rejected.update(p.rejected)
        return cls(
            ppg=np.concatenate([p.ppg for p in parts]),
            ecg=np.concatenate([p.ecg for p in parts]),
            subject_id=np.concatenate([p.subject_id for p in parts]),
            dataset=np.concatenate([p.dataset for p in parts]),
            start_s=np.concatenate([p.start_s for p in parts]),
            rejected=rejected,
        )


def _reason(exc: InvalidSignalError) -> str:
    msg = str(exc).lower()
    for key in ("nan", "inf", "flat", "saturat", "short"):
        if key in msg:
            return {"nan": "non-finite", "inf": "non-finite", "saturat": "saturated"}.get(key, key)
    return "invalid"


# Share of a record's windows that must look inverted before the whole record is negated. The
# official ``record_ecg_invert_checker`` flips on a bare majority (> 1/2): a near-even vote (56/44 on a
# record outside ../shared, issue 22) flipped a record, and flipping it lowered every model's score.
# With 2/3 every record of ../shared is decided as by the majority rule (their votes are 0-3 %,
# 68-81 % or 100 % inverted at hops of 1-10 s) and a near-even record is left as recorded.
POLARITY_AGREEMENT = 2 / 3


def polarity_vote(
    ecg_segments: list[np.ndarray], sample_rate_hz: float, cfg: pp.PreprocessConfig | None = None,
    agreement: float = POLARITY_AGREEMENT,
) -> dict:
    """The record-level ECG polarity vote over raw ECG windows of one record.

    Each finite, non-flat window votes with :func:`~anyppg_edge.preprocessing.ecg_is_inverted`; the
    record is flipped only when at least ``agreement`` of the voters say inverted. Returns
    ``{"voting_windows", "inverted_windows", "inverted_fraction", "agreement", "flipped", "ambiguous"}``;
    ``ambiguous`` marks a vote between ``1 - agreement`` and ``agreement`` (left as recorded)."""
    cfg = cfg or pp.PreprocessConfig()
    if not 0.5 < agreement <= 1:
        raise ConfigError(f"polarity agreement must be in (0.5, 1], got {agreement}")
    n = n_inv = 0
    for e in ecg_segments:
        if not (e.size and np.isfinite(e).all() and np.ptp(e) > 0):
            continue
        try:
            inverted = pp.ecg_is_inverted(e, sample_rate_hz, cfg)
        except InvalidSignalError:  # too short to vote (shorter than the 2 s polarity window)
            continue
        n += 1
        n_inv += bool(inverted)
    frac = n_inv / n if n else 0.0
    return {
        "voting_windows": n,
        "inverted_windows": n_inv,
        "inverted_fraction": round(frac, 4),
        "agreement": round(float(agreement), 4),
        "flipped": bool(n and frac >= agreement - 1e-12),
        "ambiguous": bool(n and 1 - agreement < frac < agreement),
    }


def extract_windows(
    rec: Recording,
    cfg: pp.PreprocessConfig | None = None,
    hop_s: float | None = None,
    correct_polarity: bool = True,
    ecg_quality: bool = True,
    polarity_agreement: float = POLARITY_AGREEMENT,
) -> WindowSet:
    """Cut synchronized windows from a recording's ``ppg`` and ``ecg`` channels and preprocess them.

    Windows start every ``hop_s`` seconds (default: ``cfg.window_s``, no overlap). The ECG polarity
    is corrected per record (:func:`polarity_vote`: all windows negated when at least
    ``polarity_agreement`` of them look inverted, default 2/3, not the official bare majority; the
    vote is in ``WindowSet.polarity``) and, with ``ecg_quality``, windows whose ECG fails Zhao 2018
    (neurokit2, ~65 ms per window) are dropped. A window is kept only when both its PPG and its ECG
    pass the reference checks (finite, not flat, not saturated); the others are counted in
    ``rejected`` by reason.
    """
    cfg = cfg or pp.PreprocessConfig()
    hop_s = cfg.window_s if hop_s is None else hop_s
    if hop_s <= 0:
        raise ConfigError(f"hop_s must be > 0 s, got {hop_s}")
    ppg_ch, ecg_ch = rec.channel("ppg"), rec.channel("ecg")
    n_windows = int(np.floor((min(ppg_ch.duration_s, ecg_ch.duration_s) - cfg.window_s) / hop_s + 1e-9)) + 1
    segs: dict[str, list[np.ndarray]] = {"ppg": [], "ecg": []}
    starts_all = [i * hop_s for i in range(max(n_windows, 0))]
    for name, ch in (("ppg", ppg_ch), ("ecg", ecg_ch)):
        n = pp.window_length_samples(ch.sample_rate_hz, cfg)
        for t0 in starts_all:
            a = round(t0 * ch.sample_rate_hz)
            segs[name].append(ch.data[a : a + n])
    ecg_sr = ecg_ch.sample_rate_hz
    polarity: dict = {}
    if correct_polarity:
        polarity = polarity_vote(segs["ecg"], ecg_sr, cfg, polarity_agreement)
        if polarity["flipped"]:
            segs["ecg"] = [-e for e in segs["ecg"]]
    out_ppg, out_ecg, starts = [], [], []
    rejected: Counter = Counter()
    for t0, raw_ppg, raw_ecg in zip(starts_all, segs["ppg"], segs["ecg"], strict=True):
        try:
            p = pp.preprocess_ppg_window(raw_ppg, ppg_ch.sample_rate_hz, cfg)
            e = pp.preprocess_ecg_window(raw_ecg, ecg_sr, cfg)
        except InvalidSignalError as exc:
            rejected[_reason(exc)] += 1
            continue
        if ecg_quality and not pp.ecg_quality_zhao2018(pp.ecg_filter(raw_ecg, ecg_sr, cfg), ecg_sr):
            rejected["ecg-quality"] += 1
            continue
        out_ppg.append(p)
        out_ecg.append(e)
        starts.append(t0)
    n = len(out_ppg)
    if n == 0:
        ws = WindowSet.empty(cfg.window_samples)
        ws.rejected = rejected
        ws.polarity = polarity
        return ws
    return WindowSet(
        ppg=np.stack(out_ppg),
        ecg=np.stack(out_ecg),
        subject_id=np.full(n, rec.subject_id),
        dataset=np.full(n, rec.dataset),
        start_s=np.asarray(starts, dtype=np.float64),
        rejected=rejected,
        polarity=polarity,
    )
