"""Which kind of CPU a chapter's outputs were computed on.

Training on the CPU gives the same records bit for bit on one kind of CPU, not across kinds:
AVX2 and AVX-512 kernels (and the maths libraries, which pick their code paths by vendor) round
differently in the last bit, and training amplifies that into other digits, sometimes another
verdict. (Different splits of the work between threads would too, so a CPU run always trains
with `train.CPU_THREADS` threads; the signature keeps the kernel's thread count for the analysis
in a chapter, whose BLAS products and t-SNE may split their sums by it.) So the book stamps
every notebook it executes with `cpu_signature` (notebook metadata ``fairens.executed_on``),
and the regression tests compare a trained chapter's outputs digit for digit only on a machine
with the same signature. (Analysing a record, as the full-scale
pages do, gives the same bits on any x86 CPU: see `records.softmax_on_any_cpu`.)
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")  # Linux; elsewhere the signature falls back to `platform`


def _first_processor() -> dict[str, str]:
    """The fields of the first processor in /proc/cpuinfo ({} where there is none)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_signature(threads: int | None = None) -> str:
    """The CPU as far as it decides a training run's last bits, e.g.
    ``"x86_64 AuthenticAMD family 25 model 17; torch 2.14.1+cu130, AVX512 kernels, 2 threads"``:
    architecture, vendor, family and model, torch's version, the vector kernels it chose and the
    intra-op threads (``threads``, default torch's own count in this process)."""
    info = _first_processor()
    cpu = " ".join(f"{label}{info[key]}" for key, label in
                   (("vendor_id", ""), ("cpu family", "family "), ("model", "model ")) if info.get(key))
    cpu = cpu or platform.processor() or "unknown CPU"
    threads = threads or torch.get_num_threads()
    return (f"{platform.machine()} {cpu}; torch {torch.__version__}, "
            f"{torch.backends.cpu.get_cpu_capability()} kernels, {threads} thread{'s' * (threads != 1)}")
