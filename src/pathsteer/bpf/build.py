"""Compile a BPF C source into an object, as ``make bpf`` does (tests and benchmarks build
their own small programs with it; the shipped objects come from the Makefile).

The flags are the Makefile's ``BPF_CFLAGS``; keep the two in step.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

from pathsteer.errors import BpfError, UnsupportedError

# The repository's bpf/ directory (headers such as common.h), when running from a checkout.
BPF_SOURCE_DIR = Path(__file__).resolve().parents[3] / "bpf"


def bpf_cflags() -> list[str]:
    arch = platform.machine()
    return ["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", f"-I/usr/include/{arch}-linux-gnu", f"-I{BPF_SOURCE_DIR}"]


def compile_object(source: str | Path, output: str | Path, *, defines: dict[str, object] | None = None,
                   clang: str = "clang") -> Path:
    """``clang $(BPF_CFLAGS) [-DNAME=VALUE...] -c source -o output``; BpfError with clang's messages
    on failure."""
    if shutil.which(clang) is None:
        raise UnsupportedError(f"{clang} not found: install clang (make deps)")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    flags = [f"-D{name}={value}" for name, value in (defines or {}).items()]
    proc = subprocess.run([clang, *bpf_cflags(), *flags, "-c", str(source), "-o", str(output)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
        raise BpfError(f"compiling {source}: {first}", 0, proc.stderr)
    return output
