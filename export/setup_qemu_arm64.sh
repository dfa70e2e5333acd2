#!/usr/bin/env bash
# Emulated aarch64 environment for export/device_runner.py (functional check, not timing).
#
#   export/setup_qemu_arm64.sh [CACHE_DIR]          # default CACHE_DIR: runs/arm64 (never committed)
#   export/setup_qemu_arm64.sh --print-run-prefix   # the command prefix to run arm64 Python under qemu
#
# What it does (see ../shared/notes/toolchain-study.md section 6), nothing installed system-wide and
# no binfmt registration:
#   1. `apt-get download qemu-user-static` and `dpkg -x` it into CACHE/qemu;
#   2. Debian arm64 python3.11 + libstdc++6 debs through a private apt state (APT::Architecture=arm64,
#      own status file, lists and cache under CACHE/apt), each `dpkg -x` into CACHE/sysroot;
#   3. a fake aarch64 /proc/cpuinfo (Cortex-A72, part 0xd08, 4 cores) and /sys/devices/system/cpu
#      topology inside the sysroot: qemu-user resolves absolute paths under -L first, and without them
#      LiteRT's cpuinfo parses the host's x86 /proc/cpuinfo and segfaults creating the Interpreter;
#   4. aarch64 wheels (same versions as the x86 venv) with `pip install --target CACHE/site
#      --platform manylinux_2_27_aarch64 ... --only-binary=:all: --no-deps`.
# Idempotent: each step is skipped when its output exists. Run arm64 Python with:
#   CACHE/qemu/usr/bin/qemu-aarch64-static -cpu cortex-a72 -L CACHE/sysroot -E PYTHONPATH=CACHE/site \
#       CACHE/sysroot/usr/bin/python3.11 export/device_runner.py MODEL ...
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PRINT=0
if [[ "${1:-}" == "--print-run-prefix" ]]; then PRINT=1; shift; fi
CACHE=$(mkdir -p "${1:-$ROOT/runs/arm64}" && cd "${1:-$ROOT/runs/arm64}" && pwd)
QEMU="$CACHE/qemu/usr/bin/qemu-aarch64-static"
SYSROOT="$CACHE/sysroot"
SITE="$CACHE/site"
CPU=${QEMU_CPU:-cortex-a72}
if [[ $PRINT == 1 ]]; then
  echo "$QEMU -cpu $CPU -L $SYSROOT -E PYTHONPATH=$SITE $SYSROOT/usr/bin/python3.11"
  exit 0
fi
PIP=${PIP:-"$ROOT/.venv/bin/python -m pip"}
# Same versions as the x86 venv so that embeddings are comparable.
NUMPY_V=${NUMPY_V:-$("$ROOT/.venv/bin/python" -c 'import numpy; print(numpy.__version__)')}
LITERT_V=${LITERT_V:-$("$ROOT/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ai-edge-litert"))')}
ORT_V=${ORT_V:-$("$ROOT/.venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)')}
SCIPY_V=${SCIPY_V:-$("$ROOT/.venv/bin/python" -c 'import scipy; print(scipy.__version__)')}

# 1. qemu-user-static
if [[ ! -x "$QEMU" ]]; then
  mkdir -p "$CACHE/debs"
  (cd "$CACHE/debs" && apt-get download qemu-user-static)
  dpkg -x "$(ls "$CACHE"/debs/qemu-user-static_*.deb | head -1)" "$CACHE/qemu"
  # keep only the aarch64 emulator (the package ships ~30 targets, ~370 MB)
  find "$CACHE/qemu/usr/bin" -type f ! -name qemu-aarch64-static -delete
  rm -rf "$CACHE/debs"
fi

# 2. arm64 Python sysroot through a private apt state
if [[ ! -x "$SYSROOT/usr/bin/python3.11" ]]; then
  mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$SYSROOT"
  : > "$CACHE/apt/status"
  APT=(apt-get -o APT::Architecture=arm64 -o APT::Architectures::=arm64
       -o Dir::State::status="$CACHE/apt/status" -o Dir::State::Lists="$CACHE/apt/lists"
       -o Dir::Cache="$CACHE/apt/cache" -o Debug::NoLocking=1 -q)
  "${APT[@]}" update
  "${APT[@]}" install -y --download-only python3.11 libstdc++6
  for deb in "$CACHE"/apt/cache/archives/*.deb; do dpkg -x "$deb" "$SYSROOT"; done
  rm -rf "$CACHE/apt"  # package lists and debs are not needed once extracted
fi

# 3. fake aarch64 CPU description inside the sysroot
NCPU=4
mkdir -p "$SYSROOT/proc" "$SYSROOT/sys/devices/system/cpu"
{
  for ((i = 0; i < NCPU; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nModel\t\t: emulated Cortex-A72 (qemu-user, fake cpuinfo)\n'
} > "$SYSROOT/proc/cpuinfo"
for f in present possible online; do echo "0-$((NCPU - 1))" > "$SYSROOT/sys/devices/system/cpu/$f"; done
echo "$((NCPU - 1))" > "$SYSROOT/sys/devices/system/cpu/kernel_max"
for ((i = 0; i < NCPU; i++)); do
  t="$SYSROOT/sys/devices/system/cpu/cpu$i/topology"
  mkdir -p "$t"
  echo "$i" > "$t/core_id"
  echo 0 > "$t/physical_package_id"
  echo 0 > "$t/cluster_id"
  echo "$i" > "$t/thread_siblings_list"
  echo "$i" > "$t/core_cpus_list"
  echo "0-$((NCPU - 1))" > "$t/core_siblings_list"
  echo "0-$((NCPU - 1))" > "$t/package_cpus_list"
  echo "0-$((NCPU - 1))" > "$t/cluster_cpus_list"
done

# 4. aarch64 wheels
if [[ ! -d "$SITE/ai_edge_litert" || ! -d "$SITE/onnxruntime" || ! -d "$SITE/numpy" || ! -d "$SITE/scipy" ]]; then
  $PIP install --quiet --target "$SITE" --no-deps --only-binary=:all: --python-version 3.11 \
    --implementation cp --abi cp311 \
    --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    "numpy==$NUMPY_V" "scipy==$SCIPY_V" "ai-edge-litert==$LITERT_V" "onnxruntime==$ORT_V" flatbuffers packaging
fi

# smoke test: the emulated interpreter imports numpy and both runtimes
"$QEMU" -cpu "$CPU" -L "$SYSROOT" -E PYTHONPATH="$SITE" "$SYSROOT/usr/bin/python3.11" -c \
  'import platform, numpy, onnxruntime; from ai_edge_litert.interpreter import Interpreter; print("arm64 ok:", platform.machine(), numpy.__version__, onnxruntime.__version__)'
