"""A C99 streaming PPG preprocessor generated from the input contract (issue 19, item 1).

It mirrors the float32 ``device`` mode of :class:`anyppg_edge.stream.streamer.Streamer` (its module
docstring is the streaming contract): FIFO bursts of int32 ADC codes with host timestamps go into a
fixed ring buffer of one window; the gap / interpolation / jump / reset / saturation / flat / drift
rules set the same flag bits; a window is cut every hop and, unless a hard flag is set, runs the
device chain in float32: minus its integer mean, MNE ``reflect_limited`` padding, second-order
sections forward and backward (scipy's ``sosfilt`` recurrence, same operation order), polyphase
resampling to the contract rate (``resample_poly``'s own FIR, transposed and flipped as ``upfirdn``
holds it; skipped when the sensor rate is the contract rate), z-score (numpy's pairwise sums), and
optional int8 quantization (TFLite's QUANTIZE: ``x / scale`` in float32, half away from zero).

:func:`generate_c_preprocessor` writes three files:

* ``anyppg_stream_config.h``: every constant, computed here from the
  :class:`~anyppg_edge.preprocessing.PreprocessConfig` with the designs the Python chain uses (the
  band-pass SOS and its ``sosfilt_zi`` at the sensor rate, the edge padding from MNE's ringing
  estimate of the ``ba`` design, ``resample_poly``'s Kaiser FIR), with the contract as comments;
* ``anyppg_stream.h`` / ``anyppg_stream.c``: the API. No malloc, no recursion (numpy's pairwise sum
  runs on an explicit stack), no OS calls; the whole state is one ``anyppg_stream_t`` whose size is
  fixed at compile time (``anyppg_stream_state_bytes()``); windows are handed to a callback.

NaN samples cannot occur (int32 codes) and the float32 chain cannot overflow on int32 codes, so the
``nan`` and ``overflow`` bits are defined but never set by the C code.

The library layer rule (deploy < stream) keeps this module from importing the streamer; the flag
values below are the streamer's (``tests/test_c_stream.py`` checks they are equal).
"""

from __future__ import annotations

import ctypes
import json
import math
import struct
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from anyppg_edge import preprocessing as pp
from anyppg_edge.deploy.export.c_encoder import CFLAGS, SANITIZE_FLAGS, _cc, _run_cc
from anyppg_edge.errors import DataFormatError, InvalidSignalError
from anyppg_edge.stream.streamer import (
    _EPS,
    _MAX_SLOTS,
    _RATE_CHECK_MIN_SLOTS,
    FLAG_NAMES,
    HARD_FLAGS,
    bandpass_design,
    check_sensor_rate,
)

__all__ = [
    "FLAGS",
    "HARD_FLAGS",
    "CStreamer",
    "CWindow",
    "StreamTables",
    "build_stream_driver",
    "build_stream_library",
    "cortexm_sizes",
    "generate_c_preprocessor",
    "run_stream_driver",
    "stream_tables",
]

FLAGS = {name: bit for bit, name in FLAG_NAMES.items()}  # the Streamer's flag bits, by name
_STREAM_FLAGS = ("-ffp-contract=off",)  # the float32 chain mirrors numpy/scipy: no fused multiply-add


def _f32(v: float) -> str:
    """A float32 literal that round-trips exactly."""
    r = repr(float(np.float32(v)))
    if r in ("inf", "-inf", "nan"):
        raise DataFormatError(f"non-finite coefficient {v!r}")
    return r + "f"


def _f64(v: float) -> str:
    return repr(float(v))


@dataclass(frozen=True)
class StreamTables:
    """Everything the C code needs, computed from the configuration (nothing hand-copied)."""

    odr_hz: float
    target_hz: int
    n_win: int
    n_hop: int
    n_out: int
    max_fill: int
    n_settle: int
    full_scale: int | None
    flat_w: int
    sos32: np.ndarray  # [n_sections, 6] float32
    zi32: np.ndarray  # [n_sections, 2] float32
    padlen: int
    up: int
    down: int
    h_per_phase: int
    n_pre_remove: int
    h_trans_flip: np.ndarray  # float32 [up * h_per_phase], upfirdn's layout
    quant: tuple[float, int] | None


def _resample_tables(up: int, down: int, n_in: int) -> tuple[np.ndarray, int, int]:
    """``resample_poly``'s float32 FIR for float32 input (Kaiser 5.0, ``half_len = 10 * max``, times
    ``up``, front/back zero padded), in ``upfirdn``'s transposed-flipped layout; taps per phase and
    the leading outputs removed."""
    from scipy import signal

    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)
    h *= np.float32(up)
    n_out = -(-n_in * up // down)
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    n_post_pad = 0

    def out_len(len_h: int) -> int:
        return ((n_in - 1) * up + len_h - 1) // down + 1

    while out_len(h.size + n_pre_pad + n_post_pad) < n_out + n_pre_remove:
        n_post_pad += 1
    h = np.concatenate([np.zeros(n_pre_pad, np.float32), h, np.zeros(n_post_pad, np.float32)])
    full = np.zeros(h.size + (-h.size % up), np.float32)
    full[: h.size] = h
    htf = np.ascontiguousarray(full.reshape(-1, up).T[:, ::-1]).ravel()
    return htf, full.size // up, n_pre_remove


def stream_tables(cfg: pp.PreprocessConfig, odr_hz: float, hop_s: float, *, adc_bits: int | None = None,
                  max_interp_gap_s: float = 0.1, reset_settle_s: float = 0.5,
                  input_quant: Any = None) -> StreamTables:
    """The constants of the C preprocessor for ``cfg`` at the sensor rate ``odr_hz`` (as the Python
    streamer derives them in ``device`` mode)."""

    odr = float(odr_hz)
    check_sensor_rate(cfg, odr)  # a native-rate contract is fed by a sensor at its own rate only
    n_win = pp.window_length_samples(odr, cfg)
    if odr / 2.0 <= cfg.ppg_band_hz[1]:
        raise InvalidSignalError(f"odr_hz {odr:g} Hz is too low for the {cfg.ppg_band_hz[1]:g} Hz band-pass edge")
    n_hop = int(hop_s * odr + _EPS)
    if n_hop < 1:
        raise InvalidSignalError(f"hop_s={hop_s:g} s is less than one sample at {odr:g} Hz")
    sos, zi, padlen = bandpass_design(cfg, odr, n_win)
    ratio = Fraction(cfg.window_samples, n_win)
    up, down = ratio.numerator, ratio.denominator
    if (up, down) == (1, 1):
        htf, hpp, pre = np.ones(1, np.float32), 1, 0
    else:
        htf, hpp, pre = _resample_tables(up, down, n_win)
    quant = None
    if input_quant is not None:
        scale, zp = (input_quant.scale, input_quant.zero_point) if hasattr(input_quant, "scale") else input_quant
        quant = (float(scale), int(zp))
    return StreamTables(
        odr_hz=odr, target_hz=cfg.target_sample_rate_hz, n_win=n_win, n_hop=n_hop, n_out=cfg.window_samples,
        max_fill=int(max_interp_gap_s * odr + _EPS), n_settle=max(1, int(reset_settle_s * odr + _EPS)),
        full_scale=None if adc_bits is None else (1 << int(adc_bits)) - 1,
        flat_w=int(cfg.flat_window_s * odr + _EPS), sos32=sos.astype(np.float32),
        zi32=np.asarray(zi).astype(np.float32), padlen=int(padlen), up=up, down=down,
        h_per_phase=hpp, n_pre_remove=pre, h_trans_flip=htf, quant=quant,
    )


# ----------------------------------------------------------------------------------------------
# C sources
# ----------------------------------------------------------------------------------------------


def _c_rows(values: np.ndarray, per_line: int = 8) -> str:
    items = [_f32(v) for v in np.asarray(values).ravel()]
    return ",\n".join("    " + ", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def _config_header(t: StreamTables, cfg: pp.PreprocessConfig, contract: Any, extra: dict[str, Any]) -> str:
    from anyppg_edge.contract import filter_spec, normalization_spec

    lines = [
        "/* Generated by anyppg_edge.stream.c_stream: do not edit. */",
        "/* Input contract of the model this preprocessor feeds:",
    ]
    if contract is not None:
        lines += [f" *   model: {contract.model_name} ({contract.artifact_kind}), input {list(contract.input_shape)}",
                  f" *   preprocess_config_hash: {contract.preprocess_config_hash}"]
    lines += [
        f" *   {filter_spec(cfg)}",
        f" *   {normalization_spec(cfg)}",
        f" *   PreprocessConfig: {cfg.to_json()}",
        f" *   config sha256: {cfg.config_hash()}",
        f" *   stream: {json.dumps(extra, sort_keys=True)}",
    ]
    if t.quant is not None:
        lines.append(f" *   int8 input: q = round_half_away(x / {t.quant[0]!r}) + {t.quant[1]}, clamped to [-128, 127]")
    lines += [" */", "#ifndef ANYPPG_STREAM_CONFIG_H", "#define ANYPPG_STREAM_CONFIG_H", ""]
    d = {
        "ODR_HZ": _f64(t.odr_hz), "TARGET_HZ": str(t.target_hz), "N_WIN": str(t.n_win), "N_HOP": str(t.n_hop),
        "N_TS": str((t.n_win - 1) // t.n_hop + 1),
        "N_OUT": str(t.n_out), "MAX_FILL": str(t.max_fill), "N_SETTLE": str(t.n_settle),
        "HAS_RAILS": "1" if t.full_scale is not None else "0",
        "FULL_SCALE": f"{t.full_scale if t.full_scale is not None else 0}.0",
        "MAX_SLOTS": _f64(_MAX_SLOTS),
        "RATE_TOLERANCE": _f64(extra["rate_tolerance"]), "RATE_CHECK_MIN_SLOTS": str(_RATE_CHECK_MIN_SLOTS),
        "MAX_DRIFT_PPM": _f64(extra["max_drift_ppm"]),
        "FLAT_W": str(t.flat_w), "FLAT_CHANGE_THRESHOLD": _f64(cfg.flat_change_threshold),
        "FLAT_MAX_RATIO": _f64(cfg.flat_max_ratio), "SATURATION_MAX_RATIO": _f64(cfg.saturation_max_ratio),
        "N_SOS": str(t.sos32.shape[0]), "PADLEN": str(t.padlen),
        "N_EXT": str(max(t.n_win + 2 * t.padlen, t.n_out)),
        "UP": str(t.up), "DOWN": str(t.down), "H_PER_PHASE": str(t.h_per_phase),
        "N_PRE_REMOVE": str(t.n_pre_remove), "H_LEN": str(t.h_trans_flip.size),
        "ZSCORE_EPS": _f32(cfg.zscore_eps),
        "HAS_QUANT": "1" if t.quant is not None else "0",
        "INPUT_SCALE": _f32(t.quant[0] if t.quant else 1.0), "INPUT_ZERO_POINT": f"({t.quant[1] if t.quant else 0})",
    }
    comments = {
        "N_WIN": "native samples per window: int(window_s * odr)", "N_HOP": "native samples per hop",
        "N_TS": "hop-start timestamps kept: the hop starts one window spans, (N_WIN - 1) / N_HOP + 1",
        "N_OUT": "model input samples (contract rate * window_s)",
        "MAX_FILL": "longest gap filled by linear interpolation (slots)",
        "N_SETTLE": "samples after a sensor reset flagged 'reset'",
        "FULL_SCALE": "ADC full scale: codes <= 0 or >= it are rail hits (HAS_RAILS)",
        "FLAT_W": "flat-line sub-window (samples)",
        "MAX_SLOTS": "2^53: longest timestamp step (periods) whose slot count is exact in a double",
        "PADLEN": "reflect_limited edge padding (MNE ringing of the ba design)",
        "UP": "resample_poly up / down (1 / 1: no resampling)", "H_PER_PHASE": "polyphase taps per phase",
    }
    for k, v in d.items():
        c = f"  /* {comments[k]} */" if k in comments else ""
        lines.append(f"#define ANYPPG_STREAM_{k} {v}{c}")
    lines.append("")
    for name, bit in FLAGS.items():
        lines.append(f"#define ANYPPG_FLAG_{name.upper()} {bit}u")
    lines.append(f"#define ANYPPG_HARD_FLAGS {HARD_FLAGS}u  /* every flag but interpolated: no model input */")
    lines += [
        "",
        "#ifdef ANYPPG_STREAM_TABLES /* defined by anyppg_stream.c only */",
        f"/* band-pass: order-{cfg.ppg_filter_order} Butterworth {cfg.ppg_band_hz[0]:g}-{cfg.ppg_band_hz[1]:g} Hz at "
        f"{t.odr_hz:g} Hz as second-order sections [b0 b1 b2 a0 a1 a2], float32 */",
        f"static const float anyppg_sos[{t.sos32.shape[0]}][6] = {{",
        ",\n".join("    {" + ", ".join(_f32(v) for v in row) + "}" for row in t.sos32),
        "};",
        "/* sosfilt_zi: the steady state for a unit step, scaled by the first sample */",
        f"static const float anyppg_sos_zi[{t.zi32.shape[0]}][2] = {{",
        ",\n".join("    {" + ", ".join(_f32(v) for v in row) + "}" for row in t.zi32),
        "};",
        "/* resample_poly FIR (float32, times UP), transposed and flipped per phase as upfirdn holds it */",
        f"static const float anyppg_fir[{t.h_trans_flip.size}] = {{",
        _c_rows(t.h_trans_flip),
        "};",
        "#endif",
        "",
        "#endif",
        "",
    ]
    return "\n".join(lines)


_HEADER = r"""/* Generated by anyppg_edge.stream.c_stream: do not edit.
 * Streaming PPG preprocessor (C99): FIFO bursts in, flagged model-input windows out.
 * No heap, no recursion: the whole state is one anyppg_stream_t (size fixed at compile time). */
#ifndef ANYPPG_STREAM_H
#define ANYPPG_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include "anyppg_stream_config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ANYPPG_STREAM_E_ARG (-1)   /* NULL pointer or negative count */
#define ANYPPG_STREAM_E_TIME (-2)  /* non-finite or non-increasing timestamps (within or across bursts),
                                    * or a jump of 2^53 sample periods or more (3e7 years at 10 Hz) */
#define ANYPPG_STREAM_E_RATE (-3)  /* timestamps imply another rate, or samples less than half a period apart */

typedef struct {
    int64_t index;         /* window number on the grid */
    int64_t start_sample;  /* native-rate slot of its first sample */
    uint32_t flags;        /* ANYPPG_FLAG_* bits */
    int32_t n_filled;      /* interpolated slots */
    int32_t n_missing;     /* missing slots */
    double t_start_s;      /* host timestamp of its first slot (interpolated for a filled or missing one) */
    double t_end_s;        /* host timestamp of its last slot */
    const float *x;        /* ANYPPG_STREAM_N_OUT float32 model input; NULL when a hard flag is set */
    const int8_t *q;       /* its int8 quantization (ANYPPG_STREAM_HAS_QUANT), else NULL */
} anyppg_window_t;

/* called for every window, in order; the buffers are valid during the call only */
typedef void (*anyppg_window_cb)(void *user, const anyppg_window_t *w);

typedef struct {
    double val[ANYPPG_STREAM_N_WIN];   /* ring: samples (codes, or interpolated values) */
    uint8_t st[ANYPPG_STREAM_N_WIN];   /* ring: per-slot state */
    int64_t n;                         /* next slot */
    int32_t ring_pos, hop_phase, hop_idx; /* n % N_WIN, n % N_HOP, (n / N_HOP) % N_TS: no 64-bit division per sample */
    int64_t win;                       /* next window */
    double hop_ts[ANYPPG_STREAM_N_TS]; /* host timestamps of the last N_TS hop-start slots */
    double cur_ts;                     /* host timestamp of the last slot */
    double last_ts;
    double last_val;
    int has_last;
    int last_valid;
    int32_t settle_left;
    double fit_n, fit_mi, fit_mt, fit_cii, fit_cit;  /* clock fit of the current run (Welford) */
    double done_cii, done_cit, done_n;               /* pooled closed runs */
    float work[ANYPPG_STREAM_N_EXT];   /* padded window, then z-score scratch */
    float out[ANYPPG_STREAM_N_OUT];    /* model input */
#if ANYPPG_STREAM_HAS_QUANT
    int8_t q[ANYPPG_STREAM_N_OUT];
#endif
    anyppg_window_cb cb;
    void *user;
} anyppg_stream_t;

void anyppg_stream_init(anyppg_stream_t *s, anyppg_window_cb cb, void *user);
/* One FIFO burst: n codes with host timestamps (s, strictly increasing); reset: the sensor was reset
 * before its first sample. Returns the number of windows emitted (through the callback), or a
 * negative ANYPPG_STREAM_E_* (the burst is refused, the state is unchanged). */
int anyppg_stream_push(anyppg_stream_t *s, const int32_t *codes, const double *t_s, int n, int reset);
/* estimated sensor clock drift (ppm, positive: the sensor runs fast); NaN before two bursts */
double anyppg_stream_drift_ppm(const anyppg_stream_t *s);
size_t anyppg_stream_state_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
"""

# numpy's pairwise summation (8 accumulators per leaf of <= 128, halves rounded to multiples of 8), on
# an explicit stack: one template, instantiated for a float32 array and for float64 ring samples, so
# the C sums add in numpy's order.
_PAIRWISE = r"""
static @T@ pw_leaf_@NAME@(@PARAMS@, int o, int n)
{
    @T@ r[8], res = 0;
    int i, j;
    if (n < 8) {
        for (i = 0; i < n; ++i) {
            res += @ELEM(o + i)@;
        }
        return res;
    }
    for (j = 0; j < 8; ++j) {
        r[j] = @ELEM(o + j)@;
    }
    for (i = 8; i < n - (n % 8); i += 8) {
        for (j = 0; j < 8; ++j) {
            r[j] += @ELEM(o + i + j)@;
        }
    }
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) {
        res += @ELEM(o + i)@;
    }
    return res;
}

static @T@ pw_sum_@NAME@(@PARAMS@, int n)
{
    int off[PW_STACK], len[PW_STACK], stage[PW_STACK];
    @T@ left[PW_STACK];
    int sp = 0;
    @T@ ret = 0;
    off[0] = 0;
    len[0] = n;
    stage[0] = 0;
    while (sp >= 0) {
        int m = len[sp], n2 = len[sp] / 2;
        n2 -= n2 % 8;
        if (stage[sp] == 0 && m <= PW_BLOCK) {
            ret = pw_leaf_@NAME@(@ARGS@, off[sp], m);
            --sp;
        } else if (stage[sp] == 0) {
            stage[sp] = 1;
            ++sp;
            off[sp] = off[sp - 1];
            len[sp] = n2;
            stage[sp] = 0;
        } else if (stage[sp] == 1) {
            left[sp] = ret;
            stage[sp] = 2;
            ++sp;
            off[sp] = off[sp - 1] + n2;
            len[sp] = m - n2;
            stage[sp] = 0;
        } else {
            ret = left[sp] + ret;
            --sp;
        }
    }
    return ret + 0;
}
"""


def _pairwise(name: str, ctype: str, params: str, args: str, elem: str) -> str:
    """The pairwise sum for one element source (``elem``: a C expression in ``K``, the index)."""
    import re

    text = _PAIRWISE.replace("@NAME@", name).replace("@T@", ctype).replace("@PARAMS@", params).replace("@ARGS@", args)
    return re.sub(r"@ELEM\((.*?)\)@", lambda m: elem.replace("K", m[1]), text)


PAIRWISE_C = _pairwise("f32", "float", "const float *a", "a", "a[K]") + _pairwise(
    "ring", "double", "const anyppg_stream_t *s, int i0", "s, i0", "ring_at(s, i0, K)"
)

_SOURCE = r"""/* Generated by anyppg_edge.stream.c_stream: do not edit. */
#define ANYPPG_STREAM_TABLES
#include "anyppg_stream.h"

#include <math.h>

enum { ST_OK = 0, ST_FILLED = 1, ST_MISSING = 2, ST_NAN = 3, ST_RESET_MISSING = 4, ST_SETTLE = 5 };

#define PW_BLOCK 128
#define PW_STACK 48

/* sample k of the window of N_WIN slots that starts at ring index i0 */
static double ring_at(const anyppg_stream_t *s, int i0, int k)
{
    int i = i0 + k;
    return s->val[i >= ANYPPG_STREAM_N_WIN ? i - ANYPPG_STREAM_N_WIN : i];
}

@PAIRWISE@
/* ------------------------------------------------------------------ clock fit */

static void new_clock_run(anyppg_stream_t *s)
{
    s->done_cii += s->fit_cii;
    s->done_cit += s->fit_cit;
    s->done_n += s->fit_n;
    s->fit_n = s->fit_mi = s->fit_mt = s->fit_cii = s->fit_cit = 0.0;
}

static void clock_fit(anyppg_stream_t *s, double slot, double t)
{
    double di;
    s->fit_n += 1.0;
    di = slot - s->fit_mi;
    s->fit_mi += di / s->fit_n;
    s->fit_mt += (t - s->fit_mt) / s->fit_n;
    s->fit_cii += di * (slot - s->fit_mi);
    s->fit_cit += di * (t - s->fit_mt);
}

static int drift_flagged(const anyppg_stream_t *s)
{
    double cii = s->done_cii + s->fit_cii, cit = s->done_cit + s->fit_cit;
    double odr = ANYPPG_STREAM_ODR_HZ, period, dp, low, high;
    if (!(cii > 0.0)) {
        return 0;
    }
    period = cit / cii;
    dp = 0.25 / odr * sqrt((s->done_n + s->fit_n) / cii);
    low = (1.0 / ((period + dp) * odr) - 1.0) * 1e6;
    high = period > dp ? (1.0 / ((period - dp) * odr) - 1.0) * 1e6 : HUGE_VAL;
    return low > ANYPPG_STREAM_MAX_DRIFT_PPM || high < -ANYPPG_STREAM_MAX_DRIFT_PPM;
}

double anyppg_stream_drift_ppm(const anyppg_stream_t *s)
{
    double cii = s->done_cii + s->fit_cii, cit = s->done_cit + s->fit_cit;
    if (!(cii > 0.0)) {
        return NAN;
    }
    return (1.0 / (cit / cii * ANYPPG_STREAM_ODR_HZ) - 1.0) * 1e6;
}

/* ------------------------------------------------------------------ the device chain */

static void sos_pass(float *x, int n, int backward)
{
    float zi[ANYPPG_STREAM_N_SOS][2];
    float x0 = backward ? x[n - 1] : x[0];
    int i, k, sec;
    for (sec = 0; sec < ANYPPG_STREAM_N_SOS; ++sec) {
        zi[sec][0] = anyppg_sos_zi[sec][0] * x0;
        zi[sec][1] = anyppg_sos_zi[sec][1] * x0;
    }
    for (k = 0; k < n; ++k) {
        float x_cur;
        i = backward ? n - 1 - k : k;
        x_cur = x[i];
        for (sec = 0; sec < ANYPPG_STREAM_N_SOS; ++sec) {
            const float *c = anyppg_sos[sec];
            float x_new = c[0] * x_cur + zi[sec][0];
            zi[sec][0] = c[1] * x_cur - c[4] * x_new + zi[sec][1];
            zi[sec][1] = c[2] * x_cur - c[5] * x_new;
            x_cur = x_new;
        }
        x[i] = x_cur;
    }
}

static void resample(const float *x, float *y)
{
#if ANYPPG_STREAM_UP == 1 && ANYPPG_STREAM_DOWN == 1
    int i;
    for (i = 0; i < ANYPPG_STREAM_N_OUT; ++i) {
        y[i] = x[i];
    }
#else
    int m;
    for (m = 0; m < ANYPPG_STREAM_N_OUT; ++m) {
        long yy = (long)m + ANYPPG_STREAM_N_PRE_REMOVE;
        long x_idx = yy * ANYPPG_STREAM_DOWN / ANYPPG_STREAM_UP;
        long t = yy * ANYPPG_STREAM_DOWN % ANYPPG_STREAM_UP;
        long base = x_idx - ANYPPG_STREAM_H_PER_PHASE + 1, j0 = base, j1 = x_idx, j;
        const float *h = anyppg_fir + t * ANYPPG_STREAM_H_PER_PHASE;
        float acc = 0.0f;
        if (j0 < 0) {
            j0 = 0;
        }
        if (j1 > ANYPPG_STREAM_N_WIN - 1) {
            j1 = ANYPPG_STREAM_N_WIN - 1;
        }
        for (j = j0; j <= j1; ++j) {
            acc = acc + x[j] * h[j - base];
        }
        y[m] = acc;
    }
#endif
}

#if ANYPPG_STREAM_HAS_QUANT
static int8_t quantize_one(float x)
{
    float q = x / ANYPPG_STREAM_INPUT_SCALE, frac;
    int32_t r;
    if (q != q) {
        return -128;
    }
    if (q > 1.0e6f) {
        q = 1.0e6f;
    } else if (q < -1.0e6f) {
        q = -1.0e6f;
    }
    r = (int32_t)q;
    frac = q - (float)r;
    if (frac >= 0.5f) {
        r += 1;
    } else if (frac <= -0.5f) {
        r -= 1;
    }
    r += ANYPPG_STREAM_INPUT_ZERO_POINT;
    return (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
}
#endif

/* returns 0, or ANYPPG_FLAG_OVERFLOW when the z-score is not finite */
static uint32_t device_chain(anyppg_stream_t *s, int i0)
{
    const int n = ANYPPG_STREAM_N_WIN, p = ANYPPG_STREAM_PADLEN;
    float *x = s->work + p;
    double m = floor(pw_sum_ring(s, i0, n) / (double)n);
    float mean, var, sd, denom;
    int i;
    for (i = 0; i < n; ++i) {
        x[i] = (float)(ring_at(s, i0, i) - m);
    }
    for (i = 0; i < p; ++i) {
        s->work[i] = 2.0f * x[0] - x[p - i];
        x[n + i] = 2.0f * x[n - 1] - x[n - 2 - i];
    }
    sos_pass(s->work, n + 2 * p, 0);
    sos_pass(s->work, n + 2 * p, 1);
    resample(x, s->out);
    mean = (float)((double)pw_sum_f32(s->out, ANYPPG_STREAM_N_OUT) / (double)ANYPPG_STREAM_N_OUT);
    for (i = 0; i < ANYPPG_STREAM_N_OUT; ++i) {
        float d = s->out[i] - mean;
        s->work[i] = d * d;
    }
    var = (float)((double)pw_sum_f32(s->work, ANYPPG_STREAM_N_OUT) / (double)ANYPPG_STREAM_N_OUT);
    sd = sqrtf(var);
    if (!(mean - mean == 0.0f) || !(sd - sd == 0.0f)) {
        return ANYPPG_FLAG_OVERFLOW;
    }
    denom = sd + ANYPPG_STREAM_ZSCORE_EPS;
    for (i = 0; i < ANYPPG_STREAM_N_OUT; ++i) {
        s->out[i] = (s->out[i] - mean) / denom;
#if ANYPPG_STREAM_HAS_QUANT
        s->q[i] = quantize_one(s->out[i]);
#endif
    }
    return 0u;
}

/* ------------------------------------------------------------------ windows */

static void emit(anyppg_stream_t *s)
{
    anyppg_window_t w;
    int64_t start = s->win * ANYPPG_STREAM_N_HOP;
    int i0 = (int)(start % ANYPPG_STREAM_N_WIN), cnt[6] = {0, 0, 0, 0, 0, 0}, i;
    uint32_t flags = 0u;
    for (i = 0; i < ANYPPG_STREAM_N_WIN; ++i) {
        int k = i0 + i;
        cnt[s->st[k >= ANYPPG_STREAM_N_WIN ? k - ANYPPG_STREAM_N_WIN : k]] += 1;
    }
    w.index = s->win;
    w.start_sample = start;
    w.t_start_s = s->hop_ts[(start / ANYPPG_STREAM_N_HOP) % ANYPPG_STREAM_N_TS];
    w.t_end_s = s->cur_ts; /* a window is emitted as its last slot is appended */
    s->win += 1;
    if (cnt[ST_MISSING]) {
        flags |= ANYPPG_FLAG_GAP;
    }
    if (cnt[ST_RESET_MISSING] || cnt[ST_SETTLE]) {
        flags |= ANYPPG_FLAG_RESET;
    }
    if (cnt[ST_NAN]) {
        flags |= ANYPPG_FLAG_NAN;
    }
    if (cnt[ST_FILLED]) {
        flags |= ANYPPG_FLAG_INTERPOLATED;
    }
    if (drift_flagged(s)) {
        flags |= ANYPPG_FLAG_DRIFT;
    }
    w.n_filled = cnt[ST_FILLED];
    w.n_missing = cnt[ST_MISSING] + cnt[ST_RESET_MISSING] + cnt[ST_NAN];
    if (!w.n_missing) {
        /* quality gates on the raw samples: flat-line ratio, saturation ratio, ADC rails */
        const int fw = ANYPPG_STREAM_FLAT_W, n_rate = ANYPPG_STREAM_N_WIN - ANYPPG_STREAM_FLAT_W + 1;
        int n_flat = 0, n_lo = 0, n_hi = 0, rails = 0, k, j;
        double lo = ring_at(s, i0, 0), hi = lo, sat;
        for (k = 0; k < n_rate; ++k) {
            double acc = 0.0;
            for (j = k; j < k + fw - 1; ++j) {
                acc += fabs(ring_at(s, i0, j + 1) - ring_at(s, i0, j));
            }
            if (acc / (double)(fw - 1) < ANYPPG_STREAM_FLAT_CHANGE_THRESHOLD) {
                n_flat += 1;
            }
        }
        for (k = 0; k < ANYPPG_STREAM_N_WIN; ++k) {
            double v = ring_at(s, i0, k);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
#if ANYPPG_STREAM_HAS_RAILS
            if (v <= 0.0 || v >= ANYPPG_STREAM_FULL_SCALE) {
                rails = 1;
            }
#endif
        }
        for (k = 0; k < ANYPPG_STREAM_N_WIN; ++k) {
            double v = ring_at(s, i0, k);
            n_lo += v == lo;
            n_hi += v == hi;
        }
        sat = lo == hi ? 1.0 : (double)(n_lo + n_hi) / (double)ANYPPG_STREAM_N_WIN;
        if ((double)n_flat / (double)n_rate > ANYPPG_STREAM_FLAT_MAX_RATIO) {
            flags |= ANYPPG_FLAG_FLAT;
        }
        if (sat > ANYPPG_STREAM_SATURATION_MAX_RATIO || rails) {
            flags |= ANYPPG_FLAG_SATURATION;
        }
        if (lo == hi) {
            flags |= ANYPPG_FLAG_FLAT;
        }
    }
    w.x = 0;
    w.q = 0;
    if (!(flags & ANYPPG_HARD_FLAGS)) {
        flags |= device_chain(s, i0);
        if (!(flags & ANYPPG_HARD_FLAGS)) {
            w.x = s->out;
#if ANYPPG_STREAM_HAS_QUANT
            w.q = s->q;
#endif
        }
    }
    w.flags = flags;
    if (s->cb) {
        s->cb(s->user, &w);
    }
}

/* move to slot n (start, or a skip past a jump): the slot counters from n, once */
static void seek(anyppg_stream_t *s, int64_t n)
{
    s->n = n;
    s->ring_pos = (int32_t)(n % ANYPPG_STREAM_N_WIN);
    s->hop_phase = (int32_t)(n % ANYPPG_STREAM_N_HOP);
    s->hop_idx = (int32_t)((n / ANYPPG_STREAM_N_HOP) % ANYPPG_STREAM_N_TS);
}

static int append(anyppg_stream_t *s, double v, int state, double ts)
{
    int emitted = 0;
    s->val[s->ring_pos] = v;
    s->st[s->ring_pos] = (uint8_t)state;
    if (s->hop_phase == 0) {
        s->hop_ts[s->hop_idx] = ts;
    }
    s->cur_ts = ts;
    s->n += 1;
    if (++s->ring_pos == ANYPPG_STREAM_N_WIN) {
        s->ring_pos = 0;
    }
    if (++s->hop_phase == ANYPPG_STREAM_N_HOP) {
        s->hop_phase = 0;
        if (++s->hop_idx == ANYPPG_STREAM_N_TS) {
            s->hop_idx = 0;
        }
    }
    s->last_val = v;
    s->last_valid = state == ST_OK || state == ST_FILLED || state == ST_SETTLE;
    while (s->win * ANYPPG_STREAM_N_HOP + ANYPPG_STREAM_N_WIN <= s->n) {
        emit(s);
        ++emitted;
    }
    return emitted;
}

/* missing slots j0 + 1 .. j1 of a gap: slot j at host time t0 + period * j */
static int append_missing(anyppg_stream_t *s, int64_t j0, int64_t j1, int state, double t0, double period)
{
    int emitted = 0;
    int64_t j;
    for (j = j0 + 1; j <= j1; ++j) {
        emitted += append(s, 0.0, state, t0 + period * (double)j);
    }
    return emitted;
}

static int fill_gap(anyppg_stream_t *s, int64_t gap, double next_val, double next_ts, int is_reset)
{
    int state, emitted = 0;
    const double t0 = s->last_ts, period = (next_ts - t0) / (double)(gap + 1);
    if (is_reset) {
        state = ST_RESET_MISSING;
    } else if (gap <= ANYPPG_STREAM_MAX_FILL && s->last_valid) {
        double a = s->last_val, d = next_val - s->last_val, dt = next_ts - t0;
        int64_t j;
        for (j = 1; j <= gap; ++j) {
            double frac = (double)j / (double)(gap + 1);
            emitted += append(s, a + d * frac, ST_FILLED, t0 + dt * frac);
        }
        return emitted;
    } else {
        state = ST_MISSING;
    }
    if (gap < ANYPPG_STREAM_N_WIN) {
        return append_missing(s, 0, gap, state, t0, period);
    } else {
        /* a jump past the ring, in constant work: complete the windows holding samples from before
         * it, skip the windows made of missing slots only, then the last N_WIN missing slots */
        int64_t last = s->n - 1, nxt = s->n + gap, head, tail, first_win;
        head = (last / ANYPPG_STREAM_N_HOP) * ANYPPG_STREAM_N_HOP + ANYPPG_STREAM_N_WIN - s->n;
        if (head < 0) {
            head = 0;
        }
        emitted += append_missing(s, 0, head, state, t0, period);
        first_win = (nxt + 1 - ANYPPG_STREAM_N_WIN + ANYPPG_STREAM_N_HOP - 1) / ANYPPG_STREAM_N_HOP;
        if (first_win > s->win) {
            s->win = first_win;
        }
        tail = gap - ANYPPG_STREAM_N_WIN;
        if (tail < head) {
            tail = head;
        }
        seek(s, s->n + (tail - head));
        emitted += append_missing(s, tail, gap, state, t0, period);
    }
    return emitted;
}

/* ------------------------------------------------------------------ API */

void anyppg_stream_init(anyppg_stream_t *s, anyppg_window_cb cb, void *user)
{
    int i;
    for (i = 0; i < ANYPPG_STREAM_N_WIN; ++i) {
        s->val[i] = 0.0;
        s->st[i] = ST_MISSING;
    }
    for (i = 0; i < ANYPPG_STREAM_N_TS; ++i) {
        s->hop_ts[i] = 0.0;
    }
    seek(s, 0);
    s->win = 0;
    s->cur_ts = 0.0;
    s->last_ts = 0.0;
    s->last_val = 0.0;
    s->has_last = 0;
    s->last_valid = 0;
    s->settle_left = 0;
    s->fit_n = s->fit_mi = s->fit_mt = s->fit_cii = s->fit_cit = 0.0;
    s->done_cii = s->done_cit = s->done_n = 0.0;
    s->cb = cb;
    s->user = user;
}

size_t anyppg_stream_state_bytes(void)
{
    return sizeof(anyppg_stream_t);
}

static int64_t slots(double dt)
{
    return (int64_t)rint(dt * ANYPPG_STREAM_ODR_HZ);
}

int anyppg_stream_push(anyppg_stream_t *s, const int32_t *codes, const double *t_s, int n, int reset)
{
    const double odr = ANYPPG_STREAM_ODR_HZ;
    double dmin = 0.0, dmax = 0.0, span = 0.0, min_step = 1.0;
    int64_t first = 1;
    int i, emitted = 0;
    if (!s || n < 0 || (n > 0 && (!codes || !t_s))) {
        return ANYPPG_STREAM_E_ARG;
    }
    /* validate the whole burst first: a refused burst leaves the state as it was */
    for (i = 0; i < n; ++i) {
        if (!(t_s[i] - t_s[i] == 0.0)) {
            return ANYPPG_STREAM_E_TIME;
        }
    }
    for (i = 1; i < n; ++i) {
        double d = t_s[i] - t_s[i - 1];
        if (i == 1 || d < dmin) {
            dmin = d;
        }
        if (i == 1 || d > dmax) {
            dmax = d;
        }
    }
    if (n > 1 && dmin <= 0.0) {
        return ANYPPG_STREAM_E_TIME;
    }
    if (n > 0 && s->has_last && !((t_s[n - 1] - s->last_ts) * odr < ANYPPG_STREAM_MAX_SLOTS)) {
        return ANYPPG_STREAM_E_TIME; /* a jump of MAX_SLOTS periods or more: no exact slot count */
    }
    if (n > 1 && !((t_s[n - 1] - t_s[0]) * odr < ANYPPG_STREAM_MAX_SLOTS)) {
        return ANYPPG_STREAM_E_TIME;
    }
    if (n > 1 && dmin * odr > 0.5 && dmax * odr < 1.5) {
        span = (double)(n - 1);
    } else if (n > 1) {
        for (i = 1; i < n; ++i) {
            double st = rint((t_s[i] - t_s[i - 1]) * odr);
            min_step = (i == 1 || st < min_step) ? st : min_step;
            span += st;
        }
        if (min_step < 1.0) {
            return ANYPPG_STREAM_E_RATE;
        }
    }
    if (span >= ANYPPG_STREAM_RATE_CHECK_MIN_SLOTS) {
        double period = (t_s[n - 1] - t_s[0]) / span;
        if (fabs(period * odr - 1.0) > ANYPPG_STREAM_RATE_TOLERANCE || (n - 1 >= 4 && min_step >= 2.0)) {
            return ANYPPG_STREAM_E_RATE;
        }
    }
    if (n > 0 && s->has_last) {
        if (t_s[0] <= s->last_ts) {
            return ANYPPG_STREAM_E_TIME;
        }
        first = slots(t_s[0] - s->last_ts);
        if (first < 1) {
            return ANYPPG_STREAM_E_RATE;
        }
    }
    if (reset) {
        s->settle_left = ANYPPG_STREAM_N_SETTLE;
        new_clock_run(s);
    }
    if (n == 0) {
        return 0;
    }
    if (first - 1 >= ANYPPG_STREAM_N_WIN) {
        new_clock_run(s);
    }
    clock_fit(s, (double)(s->n - 1 + first), t_s[0]);
    for (i = 0; i < n; ++i) {
        int64_t gap = (i == 0 ? first : slots(t_s[i] - t_s[i - 1])) - 1;
        int state = ST_OK;
        if (gap >= ANYPPG_STREAM_N_WIN && i > 0) {
            new_clock_run(s);
            clock_fit(s, (double)(s->n + gap), t_s[i]);
        }
        if (gap > 0) {
            emitted += fill_gap(s, gap, (double)codes[i], t_s[i], reset && i == 0);
        }
        if (s->settle_left > 0) {
            state = ST_SETTLE;
            s->settle_left -= 1;
        }
        emitted += append(s, (double)codes[i], state, t_s[i]);
        s->last_ts = t_s[i];
        s->has_last = 1;
    }
    return emitted;
}
"""

_DRIVER = r"""/* Host driver (tests, sanitizer builds): bursts from a file, windows to a file.
 * in:  per burst int32 n, int32 reset, int32 codes[n], double t[n]
 * out: per window int64 index, uint32 flags, uint32 has_x, double t_start_s, double t_end_s,
 *      float x[N_OUT] when has_x */
#include <stdio.h>
#include <stdlib.h>
#include "anyppg_stream.h"

static anyppg_stream_t state;
static int32_t codes[1 << 16];
static double ts[1 << 16];

static void on_window(void *user, const anyppg_window_t *w)
{
    FILE *f = (FILE *)user;
    uint32_t has_x = w->x != NULL;
    fwrite(&w->index, sizeof w->index, 1, f);
    fwrite(&w->flags, sizeof w->flags, 1, f);
    fwrite(&has_x, sizeof has_x, 1, f);
    fwrite(&w->t_start_s, sizeof w->t_start_s, 1, f);
    fwrite(&w->t_end_s, sizeof w->t_end_s, 1, f);
    if (has_x) {
        fwrite(w->x, sizeof(float), ANYPPG_STREAM_N_OUT, f);
    }
}

int main(int argc, char **argv)
{
    FILE *in, *out;
    int32_t hdr[2];
    int rc = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: %s BURSTS WINDOWS\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out) {
        return 2;
    }
    anyppg_stream_init(&state, on_window, out);
    while (fread(hdr, sizeof(int32_t), 2, in) == 2) {
        int r;
        if (hdr[0] < 0 || hdr[0] > (1 << 16)) {
            rc = 3;
            break;
        }
        if (fread(codes, sizeof(int32_t), (size_t)hdr[0], in) != (size_t)hdr[0]
            || fread(ts, sizeof(double), (size_t)hdr[0], in) != (size_t)hdr[0]) {
            rc = 3;
            break;
        }
        r = anyppg_stream_push(&state, codes, ts, hdr[0], hdr[1]);
        if (r < 0) {
            fprintf(stderr, "burst refused: %d\n", r);
            rc = 4;
            break;
        }
    }
    fclose(in);
    fclose(out);
    printf("state_bytes %lu\n", (unsigned long)anyppg_stream_state_bytes());
    return rc;
}
"""


def generate_c_preprocessor(cfg: pp.PreprocessConfig, odr_hz: float, hop_s: float, out_dir: str | Path, *,
                            adc_bits: int | None = None, input_quant: Any = None, contract: Any = None,
                            max_interp_gap_s: float = 0.1, reset_settle_s: float = 0.5,
                            rate_tolerance: float = 0.05, max_drift_ppm: float = 20_000.0) -> dict[str, Any]:
    """Write ``anyppg_stream_config.h``, ``anyppg_stream.h`` and ``anyppg_stream.c`` for sensor rate
    ``odr_hz`` and hop ``hop_s`` into ``out_dir``. ``contract`` (an
    :class:`~anyppg_edge.contract.InputContract`): its preprocessing is checked against ``cfg`` and its
    ``input_quant`` used unless ``input_quant`` is given. The stream parameters have the defaults of
    ``StreamConfig``. Returns the tables' figures (sizes in bytes)."""
    if contract is not None:
        contract.check(cfg)
        if input_quant is None:
            input_quant = contract.input_quant
    t = stream_tables(cfg, odr_hz, hop_s, adc_bits=adc_bits, max_interp_gap_s=max_interp_gap_s,
                      reset_settle_s=reset_settle_s, input_quant=input_quant)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"odr_hz": t.odr_hz, "hop_s": float(hop_s), "adc_bits": adc_bits, "max_interp_gap_s": max_interp_gap_s,
             "reset_settle_s": reset_settle_s, "rate_tolerance": rate_tolerance, "max_drift_ppm": max_drift_ppm}
    (out / "anyppg_stream_config.h").write_text(_config_header(t, cfg, contract, extra))
    (out / "anyppg_stream.h").write_text(_HEADER)
    (out / "anyppg_stream.c").write_text(_SOURCE.replace("@PAIRWISE@", PAIRWISE_C))
    n_ext = max(t.n_win + 2 * t.padlen, t.n_out)
    return {
        "dir": str(out), "n_win": t.n_win, "n_hop": t.n_hop, "n_out": t.n_out, "padlen": t.padlen,
        "up": t.up, "down": t.down, "fir_taps": int(t.h_trans_flip.size),
        "ring_bytes": t.n_win * 9, "work_bytes": 4 * (n_ext + t.n_out) + (t.n_out if t.quant else 0),
        "table_bytes": 4 * (t.h_trans_flip.size + t.sos32.size + t.zi32.size), "quant": t.quant,
    }


# ----------------------------------------------------------------------------------------------
# host build and binding
# ----------------------------------------------------------------------------------------------


def build_stream_library(src_dir: str | Path, out: str | Path | None = None, cc: str | None = None,
                         opt: str = "-O2") -> Path:
    """Compile the generated preprocessor into a shared library for :class:`CStreamer` (``-Werror``)."""
    src = Path(src_dir)
    lib = Path(out) if out is not None else src / "libanyppg_stream.so"
    _run_cc([_cc(cc), *CFLAGS, *_STREAM_FLAGS, opt, "-fPIC", "-shared", str(src / "anyppg_stream.c"),
             "-o", str(lib), "-lm"])
    return lib


def build_stream_driver(src_dir: str | Path, out: str | Path | None = None, cc: str | None = None,
                        sanitize: bool = False, opt: str = "-O1") -> Path:
    """A host driver executable over the generated sources (``sanitize``: AddressSanitizer +
    UndefinedBehaviorSanitizer, aborting on the first report)."""
    src = Path(src_dir)
    (src / "anyppg_stream_driver.c").write_text(_DRIVER)
    exe = Path(out) if out is not None else src / ("anyppg_stream_driver_asan" if sanitize else "anyppg_stream_driver")
    flags = [*SANITIZE_FLAGS, "-g"] if sanitize else []
    _run_cc([_cc(cc), *CFLAGS, *_STREAM_FLAGS, opt, *flags, str(src / "anyppg_stream.c"),
             str(src / "anyppg_stream_driver.c"), "-o", str(exe), "-lm"])
    return exe


def cortexm_sizes(src_dir: str | Path, board: str = "cortex-m4", workdir: str | Path | None = None,
                  opt: str = "-O2") -> dict[str, int]:
    """Cross-compile ``anyppg_stream.c`` for ``board`` (``arm-none-eabi-gcc``, ``-Werror -pedantic``):
    ``flash_bytes`` (text + rodata + data: code and the filter / FIR tables) and ``state_bytes``, the
    target's ``sizeof(anyppg_stream_t)`` (the caller's static state: ring buffer and work buffers)."""
    from anyppg_edge.deploy.cortexm import BOARDS, require_toolchain, section_sizes

    require_toolchain()
    src = Path(src_dir)
    wd = Path(workdir) if workdir is not None else src
    flags = [*BOARDS[board].cflags, opt, *CFLAGS, *_STREAM_FLAGS, "-ffunction-sections", "-fdata-sections"]
    probe = wd / "anyppg_stream_state_probe.c"
    probe.write_text('#include "anyppg_stream.h"\nanyppg_stream_t anyppg_stream_state_probe;\n')
    sizes = {}
    for name, c in (("lib", src / "anyppg_stream.c"), ("probe", probe)):
        obj = wd / f"anyppg_stream_{name}_{board}.o"
        r = subprocess.run(["arm-none-eabi-gcc", *flags, f"-I{src}", "-c", str(c), "-o", str(obj)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise DataFormatError(f"arm-none-eabi-gcc failed on {c.name}:\n{r.stderr[-3000:]}")
        sizes[name] = section_sizes(obj)
    lib = sizes["lib"]
    return {"flash_bytes": lib["text"] + lib["data"], "static_ram_bytes": lib["data"] + lib["bss"],
            "state_bytes": sizes["probe"]["bss"] + sizes["probe"]["data"]}


class CWindow(NamedTuple):
    index: int
    flags: int
    x: np.ndarray | None  # float32 [n_out], None when a hard flag is set
    q: np.ndarray | None = None  # int8 model input (quantized builds)
    start_sample: int = 0
    n_filled: int = 0
    n_missing: int = 0
    t_start_s: float = math.nan  # host timestamp of the first slot (as StreamWindow.t_start_s)
    t_end_s: float = math.nan  # of the last slot


def _bursts(bursts: Any) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    return [(np.ascontiguousarray(b.codes, np.int32), np.ascontiguousarray(b.timestamps_s, np.float64),
             bool(getattr(b, "reset", False))) for b in bursts]


def run_stream_driver(exe: str | Path, bursts: Any, n_out: int, workdir: str | Path) -> tuple[list[CWindow], str]:
    """Feed ``bursts`` to a driver built by :func:`build_stream_driver`; its windows and stdout."""
    work = Path(workdir)
    src, dst = work / "bursts.bin", work / "windows.bin"
    with open(src, "wb") as f:
        for c, t, r in _bursts(bursts):
            f.write(struct.pack("<ii", c.size, int(r)))
            f.write(c.tobytes())
            f.write(t.tobytes())
    p = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True)
    if p.returncode != 0:
        raise DataFormatError(f"stream driver failed ({p.returncode}): {p.stderr[-4000:]}")
    data = dst.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        idx, flags, has_x, t_start, t_end = struct.unpack_from("<qIIdd", data, pos)
        pos += 32
        x = None
        if has_x:
            x = np.frombuffer(data, np.float32, n_out, pos).copy()
            pos += 4 * n_out
        out.append(CWindow(idx, flags, x, t_start_s=t_start, t_end_s=t_end))
    return out, p.stdout


class _CWin(ctypes.Structure):
    _fields_ = [("index", ctypes.c_int64), ("start_sample", ctypes.c_int64), ("flags", ctypes.c_uint32),
                ("n_filled", ctypes.c_int32), ("n_missing", ctypes.c_int32),
                ("t_start_s", ctypes.c_double), ("t_end_s", ctypes.c_double),
                ("x", ctypes.POINTER(ctypes.c_float)), ("q", ctypes.POINTER(ctypes.c_int8))]


_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_CWin))
_ERRORS = {-1: "bad arguments", -2: "non-finite or non-increasing timestamps",
           -3: "timestamps imply another sample rate (or duplicated samples)"}


class CStreamer:
    """The generated C preprocessor through ctypes: ``push(codes, timestamps_s, reset=False)`` returns
    the windows the burst completed as :class:`CWindow`; ``run(bursts)`` all of them."""

    def __init__(self, lib_path: str | Path, n_out: int) -> None:
        self.lib = ctypes.CDLL(str(lib_path))
        self.n_out = int(n_out)
        self.lib.anyppg_stream_state_bytes.restype = ctypes.c_size_t
        self.lib.anyppg_stream_push.restype = ctypes.c_int
        self.lib.anyppg_stream_push.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32),
                                                ctypes.POINTER(ctypes.c_double), ctypes.c_int, ctypes.c_int]
        self.lib.anyppg_stream_init.argtypes = [ctypes.c_void_p, _CB, ctypes.c_void_p]
        self.lib.anyppg_stream_drift_ppm.restype = ctypes.c_double
        self.lib.anyppg_stream_drift_ppm.argtypes = [ctypes.c_void_p]
        self.state_bytes = int(self.lib.anyppg_stream_state_bytes())
        self._state = (ctypes.c_double * (self.state_bytes // 8 + 1))()
        self._pending: list[CWindow] = []
        self._cb = _CB(self._on_window)  # kept alive as long as the streamer
        self.lib.anyppg_stream_init(self._state, self._cb, None)

    def _on_window(self, _user: Any, wp: Any) -> None:
        w = wp.contents
        x = np.ctypeslib.as_array(w.x, (self.n_out,)).copy() if w.x else None
        q = np.ctypeslib.as_array(w.q, (self.n_out,)).copy() if w.q else None
        self._pending.append(CWindow(int(w.index), int(w.flags), x, q, int(w.start_sample), int(w.n_filled),
                                     int(w.n_missing), float(w.t_start_s), float(w.t_end_s)))

    @property
    def drift_ppm(self) -> float:
        return float(self.lib.anyppg_stream_drift_ppm(self._state))

    def push(self, codes: Any, timestamps_s: Any, reset: bool = False) -> list[CWindow]:
        c = np.ascontiguousarray(codes, np.int32)
        t = np.ascontiguousarray(timestamps_s, np.float64)
        if c.shape != t.shape or c.ndim != 1:
            raise InvalidSignalError(f"burst has {c.shape} codes and {t.shape} timestamps; expected one per sample")
        self._pending = []
        r = self.lib.anyppg_stream_push(self._state, c.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                                        t.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), int(c.size), int(reset))
        if r < 0:
            raise InvalidSignalError(f"the C preprocessor refused the burst: {_ERRORS.get(r, r)}")
        out, self._pending = self._pending, []
        assert len(out) == r
        return out

    def run(self, bursts: Any) -> list[CWindow]:
        out: list[CWindow] = []
        for c, t, r in _bursts(bursts):
            out += self.push(c, t, r)
        return out
