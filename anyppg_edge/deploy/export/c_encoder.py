"""A C99 int8 encoder generated from an exported int8 ``.tflite``, bit-exact to TensorFlow Lite Micro
(issue 18, part 1: the generator and the host build).

:func:`generate_c_encoder` reads the flatbuffer and writes plain C for that one model: no interpreter,
no heap, no OS calls, no recursion, and no floating point inside the int8 network.

* ``anyppg_encoder.h``: the API and the model's figures (input length, embedding size, I/O
  quantization, arena bytes);
* ``anyppg_model.c``: the weights as ``const`` arrays, per-channel requantization (multiplier, shift)
  precomputed here with TFLite's rules, a static arena laid out at generation time from the tensor
  lifetimes of the file's own op order (:func:`anyppg_edge.deploy.export.schedule.plan_offsets`, the
  same planner that writes TFLM's offline plan), the integer kernels and ``anyppg_encode`` (int8 in,
  int8 out). It compiles with ``-mgeneral-regs-only``: integer code only;
* ``anyppg_io.c``: the two float ends, ``anyppg_quantize_input`` (TFLite's QUANTIZE: ``x / scale``
  in float32, rounded half away from zero, plus the zero point) and ``anyppg_encode_f32``
  (quantize, run, dequantize with the model's own scales).

The integer arithmetic is that of TFLM's reference kernels, re-implemented here (not copied):
double-rounding ``MultiplyByQuantizedMultiplier`` (a saturating rounding doubling high multiply, then
a rounding right shift), ``QuantizeMultiplier`` for every multiplier (``effective = s_in * s_w /
s_out`` in double for CONV_2D / DEPTHWISE_CONV_2D per output channel, ``s_1 * s_2 / s_out`` for MUL,
ADD's rescaling of both inputs to ``2 * max(s_1, s_2)`` with a 20-bit left shift), MEAN's
requantization (TFLM folds the division by the element count into the multiplier: ``m' = (m << k) /
n``, ``shift' = shift - k`` with ``k = min(floor(log2 n), 32, 31 + shift)``), and LOGISTIC: TFLM's
int8 sigmoid rescales the input to Q4.27 (``input_multiplier``, ``input_left_shift``, saturating
outside ``input_range_radius``) and evaluates gemmlowp's fixed-point logistic (exp on [-1/4, 0) by a
Taylor polynomial, a barrel shifter of exp(-2^k) constants, 1/(1+x) by three Newton-Raphson steps).
A LOGISTIC's int8 output is a function of its int8 input alone, so that fixed-point evaluation is
done here for all 256 inputs and the C holds a 256-entry ``const`` table per distinct op
(:func:`logistic_table`); the C does one lookup per element.

Two exact speed-ups hold on both paths: a LOGISTIC whose output only feeds a MUL by that LOGISTIC's
own input (x * sigmoid(x)) becomes one 256-entry table of TFLM's MUL on TFLM's LOGISTIC
(:func:`_swish_pairs`; trace builds still write the LOGISTIC tensor), and the high multiply is
``floor((a * m + 2^30) / 2^31)``, which equals TFLite's nudged truncation for every int32 ``a``.

``-DANYPPG_USE_DSP`` compiles CONV_2D with dual 16-bit multiply-accumulates (Cortex-M4/M33 DSP
extension: ACLE ``__smlad`` / ``__sxtb16`` / ``__sxtab16`` where ``__ARM_FEATURE_DSP``, the same
operations in portable C elsewhere): the input is widened once per op to int16 with the zero-point
offset added and padding as 0 (a static ``anyppg_scratch``, group-major so each window is
contiguous), the filter is emitted in a block order that SXTB16 pairs with it
(:func:`_dsp_weight_order`), and two output channels share each load of the input. Integer sums
are exact in any order, so both paths are bit-identical to TFLM. The plain path stays the default.

RESHAPE is an alias (no code); the leading QUANTIZE and trailing DEQUANTIZE become the float ends.
An op the generator has no kernel for is refused by name (:class:`UnknownNameError`); so is a layout
it does not handle (batch or height other than 1, a MEAN over channels; :class:`DataFormatError`).

:func:`build_host_library` compiles the sources with the host compiler (``-std=c99 -Wall -Wextra
-Werror -pedantic``) into a shared library and :class:`CEncoder` runs windows through it with
ctypes. Only numpy is imported at module level; the flatbuffer schema of ``ai_edge_litert`` when a
model is read.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from anyppg_edge.errors import DataFormatError, MissingExtraError, MissingFileError, UnknownNameError

__all__ = [
    "GENERATED_OPS",
    "CEncoder",
    "build_host_driver",
    "build_host_library",
    "compile_object",
    "generate_c_encoder",
    "logistic_table",
    "object_sizes",
    "quantize_multiplier",
    "run_host_driver",
]

# the builtin ops a model may hold (QUANTIZE / DEQUANTIZE only as the float ends)
GENERATED_OPS = (
    "ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD",
    "QUANTIZE", "RESHAPE",
)
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")
_INT8, _INT32, _FLOAT32 = 9, 2, 0  # TensorType
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


# ----------------------------------------------------------------------------------------------
# TFLite's integer arithmetic, in Python integers (generation time: multipliers, LOGISTIC tables)
# ----------------------------------------------------------------------------------------------


def _round_half_away(x: float) -> int:
    """``std::round`` on a double: half away from zero, exactly."""
    a = abs(x)
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1
    return int(r if x >= 0 else -r)


def _wrap32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``m ~= q * 2^(shift - 31)`` with ``q`` in [2^30, 2^31)."""
    if m == 0.0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = _round_half_away(frac * (1 << 31))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q), int(shift)


def _srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul (int32)."""
    if a == b == _I32_MIN:
        return _I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _wrap32(_trunc_div(ab + nudge, 1 << 31))


def _rdbpot(x: int, e: int) -> int:
    """RoundingDivideByPOT: rounding arithmetic right shift, ties away from zero."""
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


def _mbqm(x: int, m: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (double rounding; the left shift wraps as TFLM's does)."""
    ls, rs = max(shift, 0), max(-shift, 0)
    return _rdbpot(_srdhm(_wrap32(x << ls), m), rs)


def _sat_shl(x: int, e: int) -> int:
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent."""
    thr = (1 << (31 - e)) - 1
    if x > thr:
        return _I32_MAX
    if x < -thr:
        return _I32_MIN
    return _wrap32(x << e)


_ONE_Q0 = _I32_MAX  # gemmlowp FixedPoint<int32, 0>::One()


def _exp_quarter(a: int) -> int:
    """gemmlowp exp on [-1/4, 0), Q0.31 in and out."""
    const_term, one_third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_4 = _rdbpot(x4, 2)
    poly = _rdbpot(_wrap32(_srdhm(_wrap32(x4_4 + x3), one_third) + x2), 1)
    return _wrap32(const_term + _srdhm(const_term, _wrap32(x + poly)))


def _exp_negative_q4(a: int) -> int:
    """gemmlowp exp_on_negative_values for a Q4.27 input, Q0.31 result."""
    frac_bits = 27
    quarter = 1 << (frac_bits - 2)
    amq = _wrap32((a & (quarter - 1)) - quarter)
    result = _exp_quarter(_sat_shl(amq, 4))
    remainder = _wrap32(amq - a)
    for e, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401)):
        if remainder & (1 << (frac_bits + e)):
            result = _srdhm(result, mult)
    return _ONE_Q0 if a == 0 else result


def _one_over_one_plus_x(a: int) -> int:
    """gemmlowp 1/(1+x) for x in (0, 1): Q0.31 in and out, Newton-Raphson in Q2.29."""
    s = a + _ONE_Q0
    half_den = _wrap32(_trunc_div(s + (1 if s >= 0 else -1), 2))
    x = _wrap32(1515870810 + _srdhm(half_den, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - _srdhm(half_den, x))
        x = _wrap32(x + _sat_shl(_srdhm(x, one_minus), 2))
    return _sat_shl(x, 1)


def _logistic_q4(a: int) -> int:
    """gemmlowp logistic of a Q4.27 value, Q0.31 result."""
    if a == 0:
        return 1 << 30  # one half
    abs_a = a if a > 0 else _wrap32(-a)
    pos = _one_over_one_plus_x(_exp_negative_q4(_wrap32(-abs_a)))
    return pos if a > 0 else _wrap32(_ONE_Q0 - pos)


def logistic_table(input_scale: float, input_zero_point: int) -> np.ndarray:
    """TFLM's int8 LOGISTIC (output scale 1/256, zero point -128) for every int8 input, index ``v + 128``."""
    scale = float(np.float32(input_scale))
    frac, left_shift = math.frexp(scale * float(1 << 27))
    mult = _wrap32(_round_half_away(frac * (1 << 31)))
    radius = math.floor(15.0 * (1 << 27) / 2.0**left_shift)
    out = np.empty(256, np.int8)
    for v in range(-128, 128):
        x = v - int(input_zero_point)
        if x <= -radius:
            y = -128
        elif x >= radius:
            y = 127
        else:
            q0 = _logistic_q4(_mbqm(x, mult, left_shift))
            y = min(max(_rdbpot(q0, 23) - 128, -128), 127)
        out[v + 128] = y
    return out


def _act_range(fused: int, scale: float, zp: int, opname: str) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (float32 ``f / scale``, rounded half away)."""

    def q(f: float) -> int:
        return int(zp) + _round_half_away(float(np.float32(f) / np.float32(scale)))

    if fused == 0:
        return -128, 127
    if fused == 1:
        return max(-128, q(0.0)), 127
    if fused == 2:
        return max(-128, q(-1.0)), min(127, q(1.0))
    if fused == 3:
        return max(-128, q(0.0)), min(127, q(6.0))
    raise DataFormatError(f"{opname}: fused activation {fused} cannot be generated (NONE, RELU, RELU_N1_TO_1, RELU6 can)")


# ----------------------------------------------------------------------------------------------
# reading the flatbuffer
# ----------------------------------------------------------------------------------------------


@dataclass
class _Tensor:
    idx: int
    name: str
    shape: tuple[int, ...]
    type: int
    scale: np.ndarray  # float32, empty when not quantized
    zp: np.ndarray
    data: np.ndarray | None  # constant data (raw bytes) or None

    def values(self, dtype: Any) -> np.ndarray:
        assert self.data is not None
        return np.frombuffer(self.data.tobytes(), dtype=np.dtype(dtype).newbyteorder("<")).reshape(self.shape or ())

    @property
    def s(self) -> float:
        return float(self.scale[0])

    @property
    def z(self) -> int:
        return int(self.zp[0]) if len(self.zp) else 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def _read_model(buf: bytes) -> tuple[Any, list[_Tensor], list[tuple[str, Any]]]:
    import sys

    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(buf))
    if sys.byteorder == "big":  # pragma: no cover
        fu.byte_swap_tflite_model_obj(model, "big", "little")
    if len(model.subgraphs) != 1:
        raise DataFormatError(f"a C encoder is generated from one subgraph; this model has {len(model.subgraphs)}")
    g = model.subgraphs[0]
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    tensors = []
    for i, t in enumerate(g.tensors):
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        b = model.buffers[t.buffer] if t.buffer else None
        data = b.data if b is not None and b.data is not None and len(b.data) > 0 else None
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        tensors.append(_Tensor(i, name, shape, int(t.type), scale, zp, data))
    ops = []
    for op in g.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            cc = oc.customCode
            name = "CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else str(cc))
        ops.append((name, op))
    return model, tensors, ops


def _wc(t: _Tensor, what: str) -> tuple[int, int]:
    """(W, C) of an NHWC tensor with N = H = 1 (also [1, W, C], [1, C], [C])."""
    shape = (1,) * (4 - len(t.shape)) + tuple(t.shape)
    if len(shape) != 4 or shape[0] != 1 or shape[1] != 1:
        raise DataFormatError(
            f"{what}: tensor {t.name!r} has shape {list(t.shape)}; the generator handles 1-D NHWC graphs "
            "(batch 1, height 1)"
        )
    return shape[2], shape[3]


def _strides(t: _Tensor, w: int, c: int, what: str) -> tuple[int, int]:
    """Element strides (along W, along C) of ``t`` broadcast to [1, 1, w, c]: 0 where it is broadcast."""
    tw, tc = _wc(t, what)
    if (tw not in (1, w)) or (tc not in (1, c)):
        raise DataFormatError(f"{what}: cannot broadcast {list(t.shape)} to [1, 1, {w}, {c}]")
    return (tc if tw == w and w > 1 else 0), (1 if tc == c and c > 1 else 0)


def _same_or_valid_pad(padding: int, in_w: int, k: int, stride: int, dil: int, out_w: int, what: str) -> int:
    """TFLite's ComputePaddingHeightWidth along W (padding 0 = SAME, 1 = VALID); checks the output width."""
    eff = (k - 1) * dil + 1
    if padding == 0:
        expect = (in_w + stride - 1) // stride
    elif padding == 1:
        expect = (in_w + stride - eff) // stride
    else:
        raise DataFormatError(f"{what}: padding {padding} cannot be generated")
    if expect != out_w:
        raise DataFormatError(f"{what}: output width {out_w}, TFLite's padding rule gives {expect}")
    total = max((out_w - 1) * stride + eff - in_w, 0)
    return total // 2


# ----------------------------------------------------------------------------------------------
# C kernels (each emitted only when the model uses it, so -Wunused-function stays quiet)
# ----------------------------------------------------------------------------------------------

_C_ARITH = r"""
/* SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded to nearest. TFLite writes it as
 * (ab + nudge) / 2^31 truncated, nudge = 2^30 or 1 - 2^30 by the sign of ab; both cases equal
 * floor((ab + 2^30) / 2^31), one multiply-accumulate and a shift. Its one saturating input,
 * a = b = INT32_MIN, never occurs: b is always a quantized multiplier, in [0, 2^31). */
static int32_t q_srdhm(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* MultiplyByQuantizedMultiplier: x * m * 2^(shift - 31), TFLite's double rounding: the high multiply,
 * then RoundingDivideByPOT (an arithmetic right shift by 0..31 rounding to nearest, ties away from
 * zero), without branches */
static int32_t q_mul(int32_t x, int32_t m, int shift)
{
    const int left = shift & ~(shift >> 31); /* max(shift, 0), without a branch */
    const int right = left - shift;
    const int32_t v = q_srdhm((int32_t)((uint32_t)x << left), m);
    const int32_t mask = (int32_t)((1u << right) - 1u);
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)v >> 31);
    return (v >> right) + ((v & mask) > threshold ? 1 : 0);
}

static int8_t q_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}
"""

_C_KERNELS = {
    "conv": r"""
/* CONV_2D on [1, 1, W, C] (grouped when cin_g < in_c): filter [out_c][k][cin_g], per-channel requantization */
static void k_conv(const int8_t *in, int in_w, int in_c, int8_t *out, int out_w, int out_c,
                   const int8_t *w, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                   int k, int stride, int dil, int pad, int cin_g,
                   int32_t in_off, int32_t out_off, int32_t lo, int32_t hi)
{
    const int cout_g = out_c / (in_c / cin_g);
    int x, oc, f, ic;
    for (x = 0; x < out_w; ++x) {
        const int x0 = x * stride - pad;
        int8_t *o = out + (long)x * out_c;
        for (oc = 0; oc < out_c; ++oc) {
            const int8_t *wf = w + (long)oc * k * cin_g;
            const int g = oc / cout_g;
            int32_t acc = 0;
            for (f = 0; f < k; ++f) {
                const int ix = x0 + f * dil;
                const int8_t *ip;
                const int8_t *wp;
                if (ix < 0 || ix >= in_w) {
                    continue;
                }
                ip = in + (long)ix * in_c + g * cin_g;
                wp = wf + f * cin_g;
                for (ic = 0; ic < cin_g; ++ic) {
                    acc += (int32_t)wp[ic] * ((int32_t)ip[ic] + in_off);
                }
            }
            if (bias) {
                acc += bias[oc];
            }
            o[oc] = q_clamp(q_mul(acc, mult[oc], shift[oc]) + out_off, lo, hi);
        }
    }
}
""",
    "conv_dsp": r"""
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define q_smlad(a, b, acc) ((int32_t)__smlad((a), (b), (acc)))
#define q_sxtb16(x) __sxtb16(x)
#define q_sxtab16(acc, x) __sxtab16((acc), (x))
/* SXTB16 of x rotated by 8 (bytes 1 and 3), one instruction (ACLE of GCC 12 has no __ror) */
static inline uint32_t q_sxtb16_hi(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
/* the same operations in portable C (a host or a core without the DSP extension): bit-identical */
static uint32_t q_sxtb16(uint32_t x)
{
    const uint32_t lo = (uint32_t)(((int32_t)(x & 0xFFu) ^ 0x80) - 0x80) & 0xFFFFu;
    const uint32_t hi = (uint32_t)(((int32_t)((x >> 16) & 0xFFu) ^ 0x80) - 0x80) & 0xFFFFu;
    return lo | (hi << 16);
}
static uint32_t q_sxtb16_hi(uint32_t x)
{
    return q_sxtb16(x >> 8);
}
static uint32_t q_sxtab16(uint32_t acc, uint32_t x)
{
    const uint32_t e = q_sxtb16(x);
    return ((acc + e) & 0xFFFFu) | (((acc >> 16) + (e >> 16)) << 16);
}
static int32_t q_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    const int32_t a0 = (int32_t)(a & 0xFFFFu) - (int32_t)((a & 0x8000u) << 1);
    const int32_t a1 = (int32_t)(a >> 16) - (int32_t)((a >> 15) & 0x10000u);
    const int32_t b0 = (int32_t)(b & 0xFFFFu) - (int32_t)((b & 0x8000u) << 1);
    const int32_t b1 = (int32_t)(b >> 16) - (int32_t)((b >> 15) & 0x10000u);
    return (int32_t)((uint32_t)acc + (uint32_t)(a0 * b0) + (uint32_t)(a1 * b1));
}
#endif

/* 4 bytes at p as a little-endian word (an unaligned LDR on the Cortex-M) */
static uint32_t q_rd32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* the conv input widened to int16 with the zero-point offset added and padded with 0 (a skipped
 * tap) to wp positions, group-major: scr[g][j][i] = in[j - pad][g * cin_g + i] + in_off, so that
 * one output's window of a group is contiguous */
static void q_widen_run(const int8_t *in, long n, int32_t in_off, int16_t *d)
{
    const uint32_t off2 = ((uint32_t)in_off & 0xFFFFu) * 0x10001u;
    long i;
    for (i = 0; i + 4 <= n; i += 4) {
        const uint32_t v = q_rd32(in + i);
        const uint32_t e02 = q_sxtab16(off2, v);
        const uint32_t e13 = q_sxtab16(off2, v >> 8);
        const uint32_t w01 = (e02 & 0xFFFFu) | (e13 << 16);
        const uint32_t w23 = (e02 >> 16) | (e13 & 0xFFFF0000u);
        memcpy(d + i, &w01, 4);
        memcpy(d + i + 2, &w23, 4);
    }
    for (; i < n; ++i) {
        d[i] = (int16_t)((int32_t)in[i] + in_off);
    }
}

static void k_widen(const int8_t *in, int in_w, int in_c, int cin_g, int pad, int wp, int32_t in_off, int16_t *scr)
{
    const int groups = in_c / cin_g;
    int j, g;
    long i;
    if (groups == 1) {
        const int j0 = pad < wp ? pad : wp;
        const int j1 = pad + in_w < wp ? pad + in_w : wp;
        for (i = 0; i < (long)j0 * in_c; ++i) {
            scr[i] = 0;
        }
        if (j1 > j0) {
            q_widen_run(in + (long)(j0 - pad) * in_c, (long)(j1 - j0) * in_c, in_off, scr + (long)j0 * in_c);
        }
        for (i = (long)(j1 > j0 ? j1 : j0) * in_c; i < (long)wp * in_c; ++i) {
            scr[i] = 0;
        }
        return;
    }
    for (j = 0; j < wp; ++j) {
        const int ix = j - pad;
        for (g = 0; g < groups; ++g) {
            int16_t *d = scr + ((long)g * wp + j) * cin_g;
            if (ix < 0 || ix >= in_w) {
                for (i = 0; i < cin_g; ++i) {
                    d[i] = 0;
                }
            } else {
                q_widen_run(in + (long)ix * in_c + (long)g * cin_g, cin_g, in_off, d);
            }
        }
    }
}

/* dot products of n int16 values at c with two int8 weight rows (blocks of 4 stored w0 w2 w1 w3,
 * so that SXTB16 gives the pairs (w0, w1) and (w2, w3) that match two int16 words of c) */
static void q_dot2(const int16_t *c, const int8_t *w0, const int8_t *w1, int n, int32_t *acc0, int32_t *acc1)
{
    int32_t a0 = *acc0, a1 = *acc1;
    int i;
    for (i = 0; i + 8 <= n; i += 8) {
        const uint32_t c01 = q_rd32(c + i), c23 = q_rd32(c + i + 2);
        const uint32_t c45 = q_rd32(c + i + 4), c67 = q_rd32(c + i + 6);
        const uint32_t u = q_rd32(w0 + i), v = q_rd32(w1 + i);
        const uint32_t u2 = q_rd32(w0 + i + 4), v2 = q_rd32(w1 + i + 4);
        a0 = q_smlad(q_sxtb16(u), c01, a0);
        a1 = q_smlad(q_sxtb16(v), c01, a1);
        a0 = q_smlad(q_sxtb16_hi(u), c23, a0);
        a1 = q_smlad(q_sxtb16_hi(v), c23, a1);
        a0 = q_smlad(q_sxtb16(u2), c45, a0);
        a1 = q_smlad(q_sxtb16(v2), c45, a1);
        a0 = q_smlad(q_sxtb16_hi(u2), c67, a0);
        a1 = q_smlad(q_sxtb16_hi(v2), c67, a1);
    }
    if (i + 4 <= n) {
        const uint32_t c01 = q_rd32(c + i), c23 = q_rd32(c + i + 2);
        const uint32_t u = q_rd32(w0 + i), v = q_rd32(w1 + i);
        a0 = q_smlad(q_sxtb16(u), c01, a0);
        a1 = q_smlad(q_sxtb16(v), c01, a1);
        a0 = q_smlad(q_sxtb16_hi(u), c23, a0);
        a1 = q_smlad(q_sxtb16_hi(v), c23, a1);
        i += 4;
    }
    for (; i < n; ++i) {
        a0 += (int32_t)w0[i] * c[i];
        a1 += (int32_t)w1[i] * c[i];
    }
    *acc0 = a0;
    *acc1 = a1;
}

static int32_t q_dot1(const int16_t *c, const int8_t *w0, int n, int32_t a0)
{
    int i;
    for (i = 0; i + 4 <= n; i += 4) {
        const uint32_t u = q_rd32(w0 + i);
        a0 = q_smlad(q_sxtb16(u), q_rd32(c + i), a0);
        a0 = q_smlad(q_sxtb16_hi(u), q_rd32(c + i + 2), a0);
    }
    for (; i < n; ++i) {
        a0 += (int32_t)w0[i] * c[i];
    }
    return a0;
}

/* requantize n int32 accumulators to int8 (per-channel multiplier and shift) */
static void q_requant(const int32_t *acc, int n, int8_t *o, const int32_t *mult, const int8_t *shift,
                      int32_t out_off, int32_t lo, int32_t hi)
{
    int i;
    for (i = 0; i < n; ++i) {
        o[i] = q_clamp(q_mul(acc[i], mult[i], shift[i]) + out_off, lo, hi);
    }
}

/* CONV_2D, dual 16-bit MACs: the input widened once into scr (padded width wp, group-major), then
 * per output position and group, two output channels at a time over n_seg segments of seg_len
 * values (one segment of k * cin_g without dilation, else one per tap, tap_step apart); the
 * accumulators of one position are requantized together */
static void k_conv_dsp(const int8_t *in, int in_w, int in_c, int8_t *out, int out_w, int out_c,
                       const int8_t *w, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                       int stride, int pad, int wp, int cin_g, int seg_len, int n_seg, int tap_step,
                       int32_t in_off, int32_t out_off, int32_t lo, int32_t hi)
{
    const int groups = in_c / cin_g;
    const int cout_g = out_c / groups;
    const long w_row = (long)seg_len * n_seg;
    const int16_t *scr = anyppg_scratch;
    int32_t acc[ANYPPG_CONV_MAX_OUT_C];
    int x, g, oc, s;
    k_widen(in, in_w, in_c, cin_g, pad, wp, in_off, anyppg_scratch);
    for (x = 0; x < out_w; ++x) {
        for (g = 0; g < groups; ++g) {
            const int16_t *cb = scr + ((long)g * wp + (long)x * stride) * cin_g;
            const int oc_end = (g + 1) * cout_g;
            const int8_t *w0 = w + (long)g * cout_g * w_row;
            for (oc = g * cout_g; oc + 2 <= oc_end; oc += 2, w0 += 2 * w_row) {
                int32_t a0 = bias[oc], a1 = bias[oc + 1];
                if (n_seg == 1) {
                    q_dot2(cb, w0, w0 + w_row, seg_len, &a0, &a1);
                } else {
                    for (s = 0; s < n_seg; ++s) {
                        q_dot2(cb + (long)s * tap_step, w0 + (long)s * seg_len, w0 + w_row + (long)s * seg_len,
                               seg_len, &a0, &a1);
                    }
                }
                acc[oc] = a0;
                acc[oc + 1] = a1;
            }
            if (oc < oc_end) {
                int32_t a0 = bias[oc];
                for (s = 0; s < n_seg; ++s) {
                    a0 = q_dot1(cb + (long)s * tap_step, w0 + (long)s * seg_len, seg_len, a0);
                }
                acc[oc] = a0;
            }
        }
        q_requant(acc, out_c, out + (long)x * out_c, mult, shift, out_off, lo, hi);
    }
}
""",
    "dwconv": r"""
/* DEPTHWISE_CONV_2D on [1, 1, W, C]: filter [k][out_c], out_c = in_c * dm */
static void k_dwconv(const int8_t *in, int in_w, int in_c, int8_t *out, int out_w, int out_c,
                     const int8_t *w, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                     int k, int stride, int dil, int pad, int dm,
                     int32_t in_off, int32_t out_off, int32_t lo, int32_t hi)
{
    int x, ic, m, f;
    for (x = 0; x < out_w; ++x) {
        const int x0 = x * stride - pad;
        for (ic = 0; ic < in_c; ++ic) {
            for (m = 0; m < dm; ++m) {
                const int oc = ic * dm + m;
                int32_t acc = 0;
                for (f = 0; f < k; ++f) {
                    const int ix = x0 + f * dil;
                    if (ix < 0 || ix >= in_w) {
                        continue;
                    }
                    acc += (int32_t)w[f * out_c + oc] * ((int32_t)in[(long)ix * in_c + ic] + in_off);
                }
                if (bias) {
                    acc += bias[oc];
                }
                out[(long)x * out_c + oc] = q_clamp(q_mul(acc, mult[oc], shift[oc]) + out_off, lo, hi);
            }
        }
    }
}
""",
    "add": r"""
/* ADD with broadcast (stride 0 along a broadcast axis): both inputs rescaled to 2 * max scale, 20-bit headroom */
static void k_add(const int8_t *a, int a_ws, int a_cs, const int8_t *b, int b_ws, int b_cs, int8_t *out, int w, int c,
                  int32_t a_off, int32_t a_m, int a_s, int32_t b_off, int32_t b_m, int b_s,
                  int left_shift, int32_t o_m, int o_s, int32_t o_off, int32_t lo, int32_t hi)
{
    int x, ch;
    for (x = 0; x < w; ++x) {
        for (ch = 0; ch < c; ++ch) {
            const int32_t av = ((int32_t)a[x * a_ws + ch * a_cs] + a_off) * ((int32_t)1 << left_shift);
            const int32_t bv = ((int32_t)b[x * b_ws + ch * b_cs] + b_off) * ((int32_t)1 << left_shift);
            const int32_t sum = q_mul(av, a_m, a_s) + q_mul(bv, b_m, b_s);
            out[(long)x * c + ch] = q_clamp(q_mul(sum, o_m, o_s) + o_off, lo, hi);
        }
    }
}
""",
    "mul": r"""
/* MUL with broadcast (stride 0 along a broadcast axis) */
static void k_mul(const int8_t *a, int a_ws, int a_cs, const int8_t *b, int b_ws, int b_cs, int8_t *out, int w, int c,
                  int32_t a_off, int32_t b_off, int32_t m, int s, int32_t o_off, int32_t lo, int32_t hi)
{
    int x, ch;
    for (x = 0; x < w; ++x) {
        for (ch = 0; ch < c; ++ch) {
            const int32_t av = (int32_t)a[x * a_ws + ch * a_cs] + a_off;
            const int32_t bv = (int32_t)b[x * b_ws + ch * b_cs] + b_off;
            out[(long)x * c + ch] = q_clamp(q_mul(av * bv, m, s) + o_off, lo, hi);
        }
    }
}
""",
    "maxpool": r"""
/* MAX_POOL_2D along W */
static void k_maxpool(const int8_t *in, int in_w, int c, int8_t *out, int out_w, int k, int stride, int pad,
                      int32_t lo, int32_t hi)
{
    int x, ch, f;
    for (x = 0; x < out_w; ++x) {
        const int x0 = x * stride - pad;
        const int f0 = x0 < 0 ? -x0 : 0;
        const int f1 = (in_w - x0) < k ? (in_w - x0) : k;
        for (ch = 0; ch < c; ++ch) {
            int32_t mx = -128;
            for (f = f0; f < f1; ++f) {
                const int32_t v = in[(long)(x0 + f) * c + ch];
                mx = v > mx ? v : mx;
            }
            out[(long)x * c + ch] = q_clamp(mx, lo, hi);
        }
    }
}
""",
    "pad": r"""
/* PAD along W and C with a constant (the zero point) */
static void k_pad(const int8_t *in, int in_w, int in_c, int8_t *out, int out_w, int out_c, int pad_w, int pad_c,
                  int8_t value)
{
    int x, ch;
    for (x = 0; x < out_w; ++x) {
        const int ix = x - pad_w;
        for (ch = 0; ch < out_c; ++ch) {
            const int ic = ch - pad_c;
            out[(long)x * out_c + ch] =
                (ix >= 0 && ix < in_w && ic >= 0 && ic < in_c) ? in[(long)ix * in_c + ic] : value;
        }
    }
}
""",
    "mean": r"""
/* MEAN over W: int32 sum, minus zero point * n, TFLM's requantization with 1/n folded into (m, s) */
static void k_mean(const int8_t *in, int w, int c, int8_t *out, int32_t zp_times_n, int32_t m, int s, int32_t o_off)
{
    int x, ch;
    for (ch = 0; ch < c; ++ch) {
        int32_t sum = 0;
        for (x = 0; x < w; ++x) {
            sum += in[(long)x * c + ch];
        }
        out[ch] = q_clamp(q_mul(sum - zp_times_n, m, s) + o_off, -128, 127);
    }
}
""",
    "lut": r"""
/* LOGISTIC: TFLM's fixed-point int8 sigmoid, evaluated at generation time for all 256 inputs */
static void k_lut(const int8_t *in, int8_t *out, long n, const int8_t *table)
{
    long i;
    for (i = 0; i < n; ++i) {
        out[i] = table[(int)in[i] + 128];
    }
}
""",
}


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if ctype == "int32_t":
        vals = [f"{v}" if int(v) != _I32_MIN else "INT32_MIN" for v in vals]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines) if lines else "0"
    return f"static const {ctype} {name}[{max(len(vals), 1)}] = {{\n    {body}\n}};\n"


def _cident(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s)[:40]


# ----------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What the generator found: the int8 network between the float ends, and its arena."""

    in_tensor: _Tensor  # int8 model input (after QUANTIZE)
    out_tensor: _Tensor  # int8 embedding (before DEQUANTIZE)
    float_in: _Tensor | None
    float_out: _Tensor | None
    core: list[tuple[int, str, Any]]  # (file op index, op name, op) of the int8 network, in file order
    alias: dict[int, int]  # RESHAPE output -> the tensor it views
    offsets: dict[int, int]
    arena_bytes: int


def _plan(model: Any, tensors: list[_Tensor], ops: list[tuple[str, Any]]) -> _Plan:
    from anyppg_edge.deploy.export.schedule import ActivationGraph, plan_offsets

    unknown = sorted({name for name, _ in ops if name not in GENERATED_OPS})
    if unknown:
        raise UnknownNameError(
            f"the C encoder generator has no kernel for op(s) {', '.join(unknown)}; it generates "
            f"{', '.join(GENERATED_OPS)}"
        )
    g = model.subgraphs[0]
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise DataFormatError(f"an encoder has one input and one output; this model has {len(g.inputs)} and {len(g.outputs)}")
    gin, gout = tensors[int(g.inputs[0])], tensors[int(g.outputs[0])]
    alias: dict[int, int] = {}

    def root(i: int) -> int:
        while i in alias:
            i = alias[i]
        return i

    float_in = float_out = None
    in_t, out_t = gin, gout
    core: list[tuple[int, str, Any]] = []
    for k, (name, op) in enumerate(ops):
        ins = [int(i) for i in op.inputs]
        outs = [int(i) for i in op.outputs]
        if name == "QUANTIZE":
            if ins[0] != gin.idx or gin.type != _FLOAT32 or tensors[outs[0]].type != _INT8:
                raise DataFormatError(
                    "QUANTIZE inside the network (int8 requantization) cannot be generated; only the float "
                    "input's QUANTIZE to int8"
                )
            float_in, in_t = gin, tensors[outs[0]]
            continue
        if name == "DEQUANTIZE":
            if outs[0] != gout.idx or tensors[ins[0]].type != _INT8:
                raise DataFormatError("DEQUANTIZE inside the network cannot be generated; only the output's")
            float_out, out_t = gout, tensors[root(ins[0])]
            continue
        if name == "RESHAPE":
            alias[outs[0]] = root(ins[0])
            continue
        core.append((k, name, op))
    if out_t.idx in alias:
        out_t = tensors[root(out_t.idx)]
    for t in (in_t, out_t):
        if t.type != _INT8 or len(t.scale) != 1:
            raise DataFormatError(f"tensor {t.name!r}: the network's input and output must be per-tensor int8")
    # the planner's view: the int8 network alone (the float ends live in the caller's buffers)
    fake_ops = [
        SimpleNamespace(
            inputs=[root(int(i)) if int(i) >= 0 else -1 for i in op.inputs],
            outputs=[root(int(i)) for i in op.outputs],
        )
        for _, _, op in core
    ]
    fake = SimpleNamespace(
        subgraphs=[SimpleNamespace(operators=fake_ops, inputs=[in_t.idx], outputs=[out_t.idx], tensors=g.tensors)],
        buffers=model.buffers,
    )
    graph = ActivationGraph(fake)
    offsets, head = plan_offsets(graph, list(range(graph.n)))
    return _Plan(in_t, out_t, float_in, float_out, core, alias, offsets, head)


def _gen_ops(plan: _Plan, tensors: list[_Tensor]) -> tuple[list[str], list[str], set[str], dict[str, Any]]:
    """C declarations (constants), the body of ``anyppg_invoke`` and the kernels used."""
    decls: list[str] = []
    body: list[str] = []
    used: set[str] = set()
    luts: dict[bytes, str] = {}
    macs = 0
    scratch = 0  # int16 values of the DSP path's widened conv input
    max_out_c = 1
    counts: dict[str, int] = {}

    def T(i: int) -> str:
        i = _root(plan, i)
        return f"(A + {plan.offsets[i]})"

    swish = _swish_pairs(plan, tensors)
    plan_ops = {k: op for k, _, op in plan.core}  # MUL k -> its LOGISTIC k, fused into one table
    for k, name, op in plan.core:
        what = f"op {k} {name}"
        ins = [int(i) for i in op.inputs]
        outs = [int(i) for i in op.outputs]
        x, o = tensors[ins[0]], tensors[outs[0]]
        for t in (x, o):
            if t.type != _INT8:
                raise DataFormatError(f"{what}: tensor {t.name!r} is not int8 (type {t.type})")
        opt = op.builtinOptions
        counts[name] = counts.get(name, 0) + 1
        tag = f"op{k}"
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w_t = tensors[ins[1]]
            b_t = tensors[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
            in_w, in_c = _wc(x, what)
            out_w, out_c = _wc(o, what)
            if w_t.data is None or w_t.type != _INT8 or len(w_t.shape) != 4 or w_t.shape[1] != 1:
                raise DataFormatError(f"{what}: the filter must be a constant int8 [O, 1, K, I] tensor")
            if len(x.zp) and len(w_t.zp) and np.any(w_t.zp != 0):
                raise DataFormatError(f"{what}: filter zero points must be 0 (TFLite int8)")
            stride, dil = int(opt.strideW), int(opt.dilationWFactor)
            w = w_t.values(np.int8)
            kw = int(w_t.shape[2])
            pad = _same_or_valid_pad(int(opt.padding), in_w, kw, stride, dil, out_w, what)
            lo, hi = _act_range(int(opt.fusedActivationFunction), o.s, o.z, what)
            fs = w_t.scale if len(w_t.scale) == out_c else np.full(out_c, w_t.scale[0], np.float32)
            mults, shifts = zip(
                *(quantize_multiplier(float(np.float32(x.s)) * float(f) / float(np.float32(o.s))) for f in fs),
                strict=True,
            )
            if name == "CONV_2D":
                cin_g = int(w_t.shape[3])
                seg_len, n_seg = (kw * cin_g, 1) if dil == 1 else (cin_g, kw)  # the DSP path's windows
                wp = (out_w - 1) * stride + (kw - 1) * dil + 1
                scratch = max(scratch, wp * in_c)
                max_out_c = max(max_out_c, out_c)
                decls.append("#ifdef ANYPPG_USE_DSP\n" + _c_array("int8_t", f"{tag}_w", _dsp_weight_order(w, seg_len))
                             + "#else\n" + _c_array("int8_t", f"{tag}_w", w) + "#endif\n")
            else:
                decls.append(_c_array("int8_t", f"{tag}_w", w))
            if b_t is not None:
                if b_t.type != _INT32 or b_t.data is None:
                    raise DataFormatError(f"{what}: the bias must be a constant int32 tensor")
                decls.append(_c_array("int32_t", f"{tag}_b", b_t.values(np.int32)))
            decls.append(_c_array("int32_t", f"{tag}_m", np.array(mults)))
            decls.append(_c_array("int8_t", f"{tag}_s", np.array(shifts)))
            bias = f"{tag}_b" if b_t is not None else "0"
            if b_t is None and name == "CONV_2D":
                decls.append("#ifdef ANYPPG_USE_DSP\n" + _c_array("int32_t", f"{tag}_b", np.zeros(out_c, np.int32))
                             + "#endif\n")
            if name == "CONV_2D":
                if in_c % cin_g or out_c % (in_c // cin_g) or int(w_t.shape[0]) != out_c:
                    raise DataFormatError(f"{what}: filter {list(w_t.shape)} does not group {in_c} -> {out_c} channels")
                used.add("conv")
                body.append(
                    f"#ifdef ANYPPG_USE_DSP\n    k_conv_dsp({T(x.idx)}, {in_w}, {in_c}, {T(o.idx)}, {out_w}, {out_c}, "
                    f"{tag}_w, {tag}_b, {tag}_m, {tag}_s, {stride}, {pad}, {wp}, {cin_g}, {seg_len}, {n_seg}, "
                    f"{dil * cin_g}, {-x.z}, {o.z}, {lo}, {hi});\n#else\n    "
                    f"k_conv({T(x.idx)}, {in_w}, {in_c}, {T(o.idx)}, {out_w}, {out_c}, {tag}_w, {bias}, {tag}_m, {tag}_s, "
                    f"{kw}, {stride}, {dil}, {pad}, {cin_g}, {-x.z}, {o.z}, {lo}, {hi});\n#endif"
                )
                macs += out_w * out_c * kw * cin_g
            else:
                dm = int(opt.depthMultiplier) if int(opt.depthMultiplier) > 0 else out_c // in_c
                if int(w_t.shape[0]) != 1 or int(w_t.shape[3]) != out_c or out_c != in_c * dm:
                    raise DataFormatError(f"{what}: filter {list(w_t.shape)} does not fit {in_c} x {dm} channels")
                used.add("dwconv")
                body.append(
                    f"k_dwconv({T(x.idx)}, {in_w}, {in_c}, {T(o.idx)}, {out_w}, {out_c}, {tag}_w, {bias}, {tag}_m, "
                    f"{tag}_s, {kw}, {stride}, {dil}, {pad}, {dm}, {-x.z}, {o.z}, {lo}, {hi});"
                )
                macs += out_w * out_c * kw
        elif name == "MUL" and k in swish:
            # x * sigmoid(x): an int8 function of x alone, TFLM's MUL on TFLM's LOGISTIC, tabulated
            sk = swish[k]
            y = tensors[ins[1]]
            lo, hi = _act_range(int(opt.fusedActivationFunction), o.s, o.z, what)
            xt = tensors[int(plan_ops[sk].inputs[0])]
            sig = logistic_table(xt.s, xt.z).astype(np.int64)
            v = np.arange(-128, 128)
            vals = {"x": v, "s": sig}
            first, second = ("x", "s") if _root(plan, ins[0]) == _root(plan, xt.idx) else ("s", "x")
            m, e = quantize_multiplier(float(np.float32(x.s)) * float(np.float32(y.s)) / float(np.float32(o.s)))
            table = np.array([
                min(max(_mbqm(int(vals[first][i] - x.z) * int(vals[second][i] - y.z), m, e) + o.z, lo), hi)
                for i in range(256)
            ], np.int8)
            tname = f"swish_{k}"
            decls.append(_c_array("int8_t", tname, table, per_line=16))
            used.add("lut")
            body.append(f"k_lut({T(xt.idx)}, {T(o.idx)}, {o.size}L, {tname});")
        elif name in ("ADD", "MUL"):
            y = tensors[ins[1]]
            w, c = _wc(o, what)
            (aw, ac), (bw, bc) = _strides(x, w, c, what), _strides(y, w, c, what)
            lo, hi = _act_range(int(opt.fusedActivationFunction), o.s, o.z, what)
            s1, s2, so = (float(np.float32(t.s)) for t in (x, y, o))
            if name == "ADD":
                ls = 20
                twice_max = 2.0 * max(s1, s2)
                (m1, e1), (m2, e2) = quantize_multiplier(s1 / twice_max), quantize_multiplier(s2 / twice_max)
                mo, eo = quantize_multiplier(twice_max / (float(1 << ls) * so))
                if max(e1, e2, eo) > 0:
                    raise DataFormatError(f"{what}: a rescaling multiplier is not below one")
                used.add("add")
                body.append(
                    f"k_add({T(x.idx)}, {aw}, {ac}, {T(y.idx)}, {bw}, {bc}, {T(o.idx)}, {w}, {c}, "
                    f"{-x.z}, {m1}, {e1}, {-y.z}, {m2}, {e2}, {ls}, {mo}, {eo}, {o.z}, {lo}, {hi});"
                )
            else:
                m, e = quantize_multiplier(s1 * s2 / so)
                used.add("mul")
                body.append(
                    f"k_mul({T(x.idx)}, {aw}, {ac}, {T(y.idx)}, {bw}, {bc}, {T(o.idx)}, {w}, {c}, "
                    f"{-x.z}, {-y.z}, {m}, {e}, {o.z}, {lo}, {hi});"
                )
        elif name == "LOGISTIC":
            if o.z != -128 or abs(o.s - 1.0 / 256) > 1e-12:
                raise DataFormatError(f"{what}: an int8 LOGISTIC needs output scale 1/256 and zero point -128 (TFLM)")
            table = logistic_table(x.s, x.z)
            fused = k in swish.values()  # computed by its MUL's table; written only for traces
            key = table.tobytes() + bytes([fused])
            if key not in luts:
                luts[key] = f"sigmoid_{len(luts)}"
                arr = _c_array("int8_t", luts[key], table, per_line=16)
                decls.append(f"#ifdef ANYPPG_TRACE\n{arr}#endif\n" if fused else arr)
            used.add("lut")
            call = f"k_lut({T(x.idx)}, {T(o.idx)}, {x.size}L, {luts[key]});"
            if fused:
                body.append(f"#ifdef ANYPPG_TRACE\n    {call}\n    TRACE({k}, {o.idx}, {T(o.idx)}, {o.size}L);\n#endif")
                continue
            body.append(call)
        elif name == "MAX_POOL_2D":
            in_w, c = _wc(x, what)
            out_w, oc = _wc(o, what)
            if int(opt.filterHeight) != 1 or oc != c:
                raise DataFormatError(f"{what}: only 1 x K pooling windows on [1, 1, W, C] can be generated")
            k_w, stride = int(opt.filterWidth), int(opt.strideW)
            pad = _same_or_valid_pad(int(opt.padding), in_w, k_w, stride, 1, out_w, what)
            lo, hi = _act_range(int(opt.fusedActivationFunction), o.s, o.z, what)
            if x.z != o.z or x.s != o.s:
                raise DataFormatError(f"{what}: input and output quantization differ")
            used.add("maxpool")
            body.append(f"k_maxpool({T(x.idx)}, {in_w}, {c}, {T(o.idx)}, {out_w}, {k_w}, {stride}, {pad}, {lo}, {hi});")
        elif name == "PAD":
            in_w, in_c = _wc(x, what)
            out_w, out_c = _wc(o, what)
            p_t = tensors[ins[1]]
            if p_t.data is None:
                raise DataFormatError(f"{what}: the paddings must be constant")
            p = p_t.values(np.int64 if p_t.type == 4 else np.int32).reshape(-1, 2)
            p = np.concatenate([np.zeros((4 - len(p), 2), p.dtype), p]) if len(p) < 4 else p
            if np.any(p[:2] != 0) or np.any(p < 0):
                raise DataFormatError(f"{what}: only non-negative padding along W and C can be generated")
            value = o.z
            if len(ins) > 2 and ins[2] >= 0:
                value = int(tensors[ins[2]].values(np.int8).reshape(-1)[0])
            if in_w + p[2].sum() != out_w or in_c + p[3].sum() != out_c:
                raise DataFormatError(f"{what}: paddings {p.tolist()} do not give the output shape")
            used.add("pad")
            body.append(
                f"k_pad({T(x.idx)}, {in_w}, {in_c}, {T(o.idx)}, {out_w}, {out_c}, {int(p[2, 0])}, {int(p[3, 0])}, {value});"
            )
        elif name == "MEAN":
            in_w, c = _wc(x, what)
            axes = {int(a) % 4 for a in tensors[ins[1]].values(np.int32).reshape(-1)} if len(x.shape) == 4 else None
            if axes is None or 2 not in axes or not axes <= {1, 2}:
                raise DataFormatError(f"{what}: only a MEAN over the W axis (2, optionally 1) of [1, 1, W, C] can be generated")
            if o.size != c:
                raise DataFormatError(f"{what}: output {list(o.shape)} is not one value per channel")
            n = in_w
            m, e = quantize_multiplier(float(np.float32(x.s)) / float(np.float32(o.s)))
            k_shift = min(n.bit_length() - 1, 32, 31 + e)  # TFLM folds 1/n into the multiplier
            m, e = (m << k_shift) // n, e - k_shift
            used.add("mean")
            body.append(f"k_mean({T(x.idx)}, {in_w}, {c}, {T(o.idx)}, {x.z * n}, {m}, {e}, {o.z});")
            macs += 0
        else:  # pragma: no cover - GENERATED_OPS and this dispatch agree
            raise UnknownNameError(f"{what}: no kernel")
        body.append(f"TRACE({k}, {o.idx}, {T(o.idx)}, {o.size}L);")
    return decls, body, used, {"macs": macs, "dsp_scratch": scratch, "max_out_c": max_out_c, "op_counts": dict(sorted(counts.items())), "logistic_tables": len(luts)}


def _swish_pairs(plan: _Plan, tensors: list[_Tensor]) -> dict[int, int]:
    """MUL ops that multiply a LOGISTIC's output by that LOGISTIC's own input, elementwise (no
    broadcast), the LOGISTIC output used by nothing else: {MUL op index: LOGISTIC op index}."""
    consumers: dict[int, list[int]] = {}
    for k, _, op in plan.core:
        for i in op.inputs:
            if int(i) >= 0:
                consumers.setdefault(_root(plan, int(i)), []).append(k)
    byk = {k: (name, op) for k, name, op in plan.core}
    out: dict[int, int] = {}
    for k, name, op in plan.core:
        if name != "LOGISTIC":
            continue
        xi, si = _root(plan, int(op.inputs[0])), _root(plan, int(op.outputs[0]))
        users = consumers.get(si, [])
        if len(users) != 1 or si == plan.out_tensor.idx:
            continue
        mname, mop = byk[users[0]]
        mins = sorted(_root(plan, int(i)) for i in mop.inputs)
        mo = tensors[int(mop.outputs[0])]
        if mname == "MUL" and mins == sorted([xi, si]) and xi != si and tensors[xi].size == tensors[si].size == mo.size:
            out[users[0]] = k
    return out


def _dsp_weight_order(w: np.ndarray, seg_len: int) -> np.ndarray:
    """The DSP path's filter order: in each segment of ``seg_len`` weights of an output channel,
    every full block of 4 stored as w0 w2 w1 w3 (SXTB16 of the word then gives (w0, w1) and, of the
    word rotated by 8, (w2, w3): the pairs of two int16 words of the widened input); tails as is."""
    flat = np.asarray(w, np.int8).reshape(-1, seg_len).copy()
    nb = seg_len // 4
    if nb:
        blocks = flat[:, : nb * 4].reshape(len(flat), nb, 4)
        flat[:, : nb * 4] = blocks[:, :, [0, 2, 1, 3]].reshape(len(flat), nb * 4)
    return flat.reshape(-1)


def _root(plan: _Plan, i: int) -> int:
    while i in plan.alias:
        i = plan.alias[i]
    return i


_HEADER = """\
/* Generated by anyppg-edge {version} from {model_name} (sha256 {sha}).
 * int8 encoder, bit-exact to TensorFlow Lite Micro's reference kernels. Do not edit. */
#ifndef ANYPPG_ENCODER_H
#define ANYPPG_ENCODER_H

#include <stdint.h>

#define ANYPPG_INPUT_LEN {in_len}
#define ANYPPG_EMBED_DIM {out_len}
#define ANYPPG_ARENA_BYTES {arena}
#define ANYPPG_INPUT_SCALE {in_scale!r}f
#define ANYPPG_INPUT_ZERO_POINT {in_zp}
#define ANYPPG_OUTPUT_SCALE {out_scale!r}f
#define ANYPPG_OUTPUT_ZERO_POINT {out_zp}

#ifdef __cplusplus
extern "C" {{
#endif

/* int8 network: input = the quantized window (ANYPPG_INPUT_LEN values), embedding = ANYPPG_EMBED_DIM
 * int8 values. Uses one static arena: not reentrant. Returns 0, or -1 on a null pointer. */
int anyppg_encode(const int8_t *input, int8_t *embedding);

/* the arena slots of the int8 input and embedding, and the network on them (no copies) */
int8_t *anyppg_input(void);
const int8_t *anyppg_output(void);
void anyppg_invoke(void);

/* float ends (anyppg_io.c): TFLite's QUANTIZE of a window, the embedding's DEQUANTIZE, and both
 * around the network */
void anyppg_quantize_input(const float *window, int8_t *input);
void anyppg_dequantize_output(const int8_t *embedding, float *out);
int anyppg_encode_f32(const float *window, float *embedding);

#ifdef ANYPPG_TRACE
/* debug builds: called after every op with the file's op index, tensor index and the int8 output */
extern void (*anyppg_trace)(int op, int tensor, const int8_t *data, long n);
#endif

#ifdef __cplusplus
}}
#endif
#endif
"""

_MODEL_C = """\
/* Generated by anyppg-edge {version} from {model_name} (sha256 {sha}). Do not edit.
 * Integer code only: weights and requantization constants in flash, one static arena of
 * ANYPPG_ARENA_BYTES laid out from the tensor lifetimes of the file's op order. */
#include "anyppg_encoder.h"

#ifdef ANYPPG_TRACE
void (*anyppg_trace)(int op, int tensor, const int8_t *data, long n) = 0;
#define TRACE(op, t, p, n) do {{ if (anyppg_trace) anyppg_trace((op), (t), (p), (n)); }} while (0)
#else
#define TRACE(op, t, p, n) do {{ }} while (0)
#endif

static int8_t anyppg_arena[ANYPPG_ARENA_BYTES];
#define A anyppg_arena
{arith}
{kernels}
/* ---- constants ---- */
{decls}
int8_t *anyppg_input(void)
{{
    return A + {in_off};
}}

const int8_t *anyppg_output(void)
{{
    return A + {out_off};
}}

void anyppg_invoke(void)
{{
    {body}
}}

int anyppg_encode(const int8_t *input, int8_t *embedding)
{{
    int i;
    if (!input || !embedding) {{
        return -1;
    }}
    for (i = 0; i < ANYPPG_INPUT_LEN; ++i) {{
        A[{in_off} + i] = input[i];
    }}
    anyppg_invoke();
    for (i = 0; i < ANYPPG_EMBED_DIM; ++i) {{
        embedding[i] = A[{out_off} + i];
    }}
    return 0;
}}
"""

_IO_C = """\
/* Generated by anyppg-edge {version} from {model_name}. Do not edit.
 * The float ends of the encoder, with the model's own scales: TFLite's QUANTIZE (float32 x / scale,
 * rounded half away from zero, plus the zero point, saturated) and DEQUANTIZE. Needs IEEE float32
 * arithmetic without -ffast-math. */
#include "anyppg_encoder.h"

static int8_t quantize_one(float x)
{{
    float q = x / ANYPPG_INPUT_SCALE;
    float frac;
    int32_t r;
    if (q != q) {{
        return -128; /* NaN: what TFLM on x86 gives */
    }}
    if (q > 1.0e6f) {{
        q = 1.0e6f;
    }} else if (q < -1.0e6f) {{
        q = -1.0e6f;
    }}
    r = (int32_t)q;
    frac = q - (float)r; /* exact */
    if (frac >= 0.5f) {{
        r += 1;
    }} else if (frac <= -0.5f) {{
        r -= 1;
    }}
    r += ANYPPG_INPUT_ZERO_POINT;
    return (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
}}

void anyppg_quantize_input(const float *window, int8_t *input)
{{
    int i;
    for (i = 0; i < ANYPPG_INPUT_LEN; ++i) {{
        input[i] = quantize_one(window[i]);
    }}
}}

void anyppg_dequantize_output(const int8_t *embedding, float *out)
{{
    int i;
    for (i = 0; i < ANYPPG_EMBED_DIM; ++i) {{
        out[i] = ANYPPG_OUTPUT_SCALE * (float)((int32_t)embedding[i] - ANYPPG_OUTPUT_ZERO_POINT);
    }}
}}

int anyppg_encode_f32(const float *window, float *embedding)
{{
    if (!window || !embedding) {{
        return -1;
    }}
    anyppg_quantize_input(window, anyppg_input());
    anyppg_invoke();
    anyppg_dequantize_output(anyppg_output(), embedding);
    return 0;
}}
"""

SOURCES = ("anyppg_encoder.h", "anyppg_model.c", "anyppg_io.c")


def generate_c_encoder(tflite_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the C99 encoder of the int8 ``tflite_path`` into ``out_dir`` and return a report: files,
    ops generated (by type), MACs, static arena bytes (vs the whole-graph plan), constant bytes, I/O
    quantization, LOGISTIC tables."""
    from anyppg_edge import __version__
    from anyppg_edge.deploy.export.metadata import read_model_bytes

    path = Path(tflite_path)
    if not path.is_file():
        raise MissingFileError(f"TFLite model not found: {path}")
    buf = read_model_bytes(path)
    model, tensors, ops = _read_model(buf)
    plan = _plan(model, tensors, ops)
    decls, body, used, stats = _gen_ops(plan, tensors)
    if plan.float_in is None or plan.float_out is None:
        raise DataFormatError(
            "the C encoder is generated from a float-I/O int8 model (QUANTIZE at the input, DEQUANTIZE at the "
            "output), whose scales it uses at the float ends"
        )
    sha = hashlib.sha256(buf).hexdigest()
    fmt = {
        "version": __version__,
        "model_name": path.name,
        "sha": sha[:16],
        "in_len": plan.in_tensor.size,
        "out_len": plan.out_tensor.size,
        "arena": max(plan.arena_bytes, 16),
        "in_scale": float(np.float32(plan.in_tensor.s)),
        "in_zp": plan.in_tensor.z,
        "out_scale": float(np.float32(plan.out_tensor.s)),
        "out_zp": plan.out_tensor.z,
        "in_off": plan.offsets[plan.in_tensor.idx],
        "out_off": plan.offsets[plan.out_tensor.idx],
    }
    if plan.float_in.size != plan.in_tensor.size or plan.float_out.size != plan.out_tensor.size:
        raise DataFormatError("the float ends and the int8 network disagree on the input or embedding size")
    kernels = "".join(_C_KERNELS[k] for k in ("dwconv", "add", "mul", "maxpool", "pad", "mean", "lut") if k in used)
    if "conv" in used:  # plain C by default; -DANYPPG_USE_DSP: the dual 16-bit MAC kernels
        kernels = (
            f"\n#ifdef ANYPPG_USE_DSP\n#include <string.h>\nstatic int16_t anyppg_scratch[{max(stats['dsp_scratch'], 4)}];\n"
            f"#define ANYPPG_CONV_MAX_OUT_C {stats['max_out_c']}\n"
            + _C_KERNELS["conv_dsp"] + "#else\n" + _C_KERNELS["conv"] + "#endif\n" + kernels
        )
    model_c = _MODEL_C.format(
        arith=_C_ARITH, kernels=kernels, decls="\n".join(decls), body="\n    ".join(body), **fmt
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"anyppg_encoder.h": _HEADER.format(**fmt), "anyppg_model.c": model_c, "anyppg_io.c": _IO_C.format(**fmt)}
    for name, text in texts.items():
        (out / name).write_text(text)
    const_bytes = sum(
        tensors[int(op.inputs[i])].data.size
        for _, name, op in plan.core
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D")
        for i in (1, 2)
        if i < len(op.inputs) and int(op.inputs[i]) >= 0
    )
    return {
        "model": str(path),
        "model_sha256": sha,
        "out_dir": str(out),
        "files": [str(out / n) for n in texts],
        "ops": stats["op_counts"],
        "macs": stats["macs"],
        "arena_bytes": fmt["arena"],
        "weight_and_bias_bytes": int(const_bytes),
        "logistic_tables": stats["logistic_tables"],
        "dsp_scratch_bytes": 2 * stats["dsp_scratch"],
        "input_len": fmt["in_len"],
        "embed_dim": fmt["out_len"],
        "input_quant": {"scale": fmt["in_scale"], "zero_point": fmt["in_zp"]},
        "output_quant": {"scale": fmt["out_scale"], "zero_point": fmt["out_zp"]},
    }


# ----------------------------------------------------------------------------------------------
# host build and binding
# ----------------------------------------------------------------------------------------------


def _cc(cc: str | None) -> str:
    exe = cc or os.environ.get("CC") or "gcc"
    found = shutil.which(exe)
    if not found:
        raise MissingExtraError(f"no C compiler {exe!r} on PATH (install gcc, or set CC)")
    return found


def _run_cc(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise DataFormatError(f"C compilation failed: {' '.join(cmd)}\n{r.stderr[-4000:]}")


def compile_object(src_dir: str | Path, source: str = "anyppg_model.c", out: str | Path | None = None,
                   cc: str | None = None, flags: tuple[str, ...] = ("-O2",)) -> Path:
    """Compile one generated source into an object file (``-Werror``)."""
    src = Path(src_dir) / source
    obj = Path(out) if out is not None else src.with_suffix(".o")
    _run_cc([_cc(cc), *CFLAGS, *flags, "-c", str(src), "-o", str(obj)])
    return obj


def build_host_library(src_dir: str | Path, out: str | Path | None = None, cc: str | None = None,
                       opt: str = "-O2", trace: bool = False) -> Path:
    """Compile the generated sources into a shared library for :class:`CEncoder` (``-Werror``)."""
    src = Path(src_dir)
    lib = Path(out) if out is not None else src / ("libanyppg_trace.so" if trace else "libanyppg.so")
    extra = ["-DANYPPG_TRACE"] if trace else []
    _run_cc([_cc(cc), *CFLAGS, opt, "-fPIC", "-shared", *extra, str(src / "anyppg_model.c"), str(src / "anyppg_io.c"),
             "-o", str(lib)])
    return lib


def object_sizes(obj: str | Path) -> dict[str, int]:
    """``size`` (Berkeley) of an object: text, data, bss; flash = text (incl. rodata) + data."""
    exe = shutil.which("size")
    if not exe:
        raise MissingExtraError("binutils 'size' is not on PATH")
    r = subprocess.run([exe, str(obj)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in r.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data}


_DRIVER_C = """\
/* Host driver for the generated encoder (tests, sanitizer builds): reads float32 windows of
 * ANYPPG_INPUT_LEN values from argv[1], writes float32 embeddings to argv[2] and the int8 model inputs
 * to argv[3] when given. Not part of the model: it uses stdio. */
#include <stdio.h>
#include "anyppg_encoder.h"

int main(int argc, char **argv)
{
    static float window[ANYPPG_INPUT_LEN];
    static float embedding[ANYPPG_EMBED_DIM];
    static int8_t q[ANYPPG_INPUT_LEN];
    FILE *in, *out, *qout = 0;
    long n = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: %s WINDOWS.f32 EMBEDDINGS.f32 [INPUTS.i8]\\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (argc > 3) {
        qout = fopen(argv[3], "wb");
    }
    if (!in || !out || (argc > 3 && !qout)) {
        fprintf(stderr, "cannot open files\\n");
        return 2;
    }
    while (fread(window, sizeof(float), ANYPPG_INPUT_LEN, in) == ANYPPG_INPUT_LEN) {
        if (anyppg_encode_f32(window, embedding) != 0) {
            return 1;
        }
        fwrite(embedding, sizeof(float), ANYPPG_EMBED_DIM, out);
        if (qout) {
            anyppg_quantize_input(window, q);
            fwrite(q, 1, ANYPPG_INPUT_LEN, qout);
        }
        ++n;
    }
    fclose(in);
    fclose(out);
    if (qout) {
        fclose(qout);
    }
    fprintf(stderr, "%ld windows\\n", n);
    return 0;
}
"""


def build_host_driver(src_dir: str | Path, out: str | Path | None = None, cc: str | None = None,
                      sanitize: bool = False, opt: str = "-O1") -> Path:
    """Write ``anyppg_driver.c`` next to the generated sources and build it with them into an
    executable (``-Werror``; ``sanitize``: AddressSanitizer + UndefinedBehaviorSanitizer, aborting on
    the first report)."""
    src = Path(src_dir)
    (src / "anyppg_driver.c").write_text(_DRIVER_C)
    exe = Path(out) if out is not None else src / ("anyppg_driver_asan" if sanitize else "anyppg_driver")
    flags = [*SANITIZE_FLAGS, "-g"] if sanitize else []
    _run_cc([_cc(cc), *CFLAGS, opt, *flags, str(src / "anyppg_model.c"), str(src / "anyppg_io.c"),
             str(src / "anyppg_driver.c"), "-o", str(exe)])
    return exe


def run_host_driver(exe: str | Path, windows: np.ndarray, embed_dim: int, workdir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Run the driver on ``windows`` (float32 [N, L]): float embeddings [N, D] and int8 inputs [N, L]."""
    w = np.ascontiguousarray(np.asarray(windows, np.float32).reshape(len(windows), -1))
    d = Path(workdir)
    (d / "windows.f32").write_bytes(w.tobytes())
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([str(exe), str(d / "windows.f32"), str(d / "emb.f32"), str(d / "inputs.i8")],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0 or "runtime error" in r.stderr or "Sanitizer" in r.stderr:
        raise DataFormatError(f"{exe} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    emb = np.fromfile(d / "emb.f32", np.float32).reshape(len(w), embed_dim)
    q = np.fromfile(d / "inputs.i8", np.int8).reshape(w.shape)
    return emb, q


class CEncoder:
    """The generated C encoder, loaded from its host shared library with ctypes."""

    def __init__(self, lib_path: str | Path, src_dir: str | Path | None = None):
        self.path = Path(lib_path)
        hdr = Path(src_dir if src_dir is not None else self.path.parent) / "anyppg_encoder.h"
        self.lib = ctypes.CDLL(str(self.path))
        i8p, f32p = ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_float)
        self.lib.anyppg_encode.argtypes = [i8p, i8p]
        self.lib.anyppg_encode_f32.argtypes = [f32p, f32p]
        self.lib.anyppg_quantize_input.argtypes = [f32p, i8p]
        self.lib.anyppg_dequantize_output.argtypes = [i8p, f32p]
        self.lib.anyppg_input.restype = i8p
        self.lib.anyppg_output.restype = i8p
        self._i8p, self._f32p = i8p, f32p
        self.input_len = int(_header_define(hdr, "ANYPPG_INPUT_LEN"))
        self.embed_dim = int(_header_define(hdr, "ANYPPG_EMBED_DIM"))

    def __repr__(self) -> str:
        return f"CEncoder({str(self.path)!r})"

    def _rows(self, x: np.ndarray, dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(x, dtype).reshape(-1, self.input_len))

    def quantize(self, windows: np.ndarray) -> np.ndarray:
        """The int8 model input of each window (TFLite's QUANTIZE, in C)."""
        x = self._rows(windows, np.float32)
        out = np.empty(x.shape, np.int8)
        for i in range(len(x)):
            self.lib.anyppg_quantize_input(x[i].ctypes.data_as(self._f32p), out[i].ctypes.data_as(self._i8p))
        return out

    def encode_int8(self, x_int8: np.ndarray) -> np.ndarray:
        x = self._rows(x_int8, np.int8)
        out = np.empty((len(x), self.embed_dim), np.int8)
        for i in range(len(x)):
            if self.lib.anyppg_encode(x[i].ctypes.data_as(self._i8p), out[i].ctypes.data_as(self._i8p)) != 0:
                raise DataFormatError("anyppg_encode failed")
        return out

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Float embeddings of float windows (``anyppg_encode_f32``)."""
        x = self._rows(windows, np.float32)
        out = np.empty((len(x), self.embed_dim), np.float32)
        for i in range(len(x)):
            if self.lib.anyppg_encode_f32(x[i].ctypes.data_as(self._f32p), out[i].ctypes.data_as(self._f32p)) != 0:
                raise DataFormatError("anyppg_encode_f32 failed")
        return out

    def trace(self, x_int8: np.ndarray) -> dict[int, np.ndarray]:
        """Every op's int8 output tensor (by tensor index) for one int8 input; needs a ``trace=True`` build."""
        got: dict[int, np.ndarray] = {}
        proto = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, self._i8p, ctypes.c_long)

        def hook(op: int, tensor: int, data: Any, n: int) -> None:
            got[tensor] = np.ctypeslib.as_array(data, shape=(n,)).copy()

        cb = proto(hook)
        slot = ctypes.c_void_p.in_dll(self.lib, "anyppg_trace")
        slot.value = ctypes.cast(cb, ctypes.c_void_p).value
        try:
            self.encode_int8(x_int8[None] if np.ndim(x_int8) == 1 else x_int8[:1])
        finally:
            slot.value = None
        return got


def _header_define(hdr: Path, name: str) -> str:
    for line in hdr.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "#define" and parts[1] == name:
            return parts[2]
    raise DataFormatError(f"{hdr}: no #define {name}")
