"""The software and hardware a measurement was taken on, and a stable machine fingerprint."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
from importlib import metadata
from typing import Any

import psutil

log = logging.getLogger(__name__)

PACKAGES = ("harness", "torch", "transformers", "onnxruntime", "onnxruntime-gpu", "openvino",
            "onnx", "optimum", "optimum-onnx", "numpy")
# what decides the int8 and reduced-precision kernels (VNNI, BF16, FP16, AMX)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
             "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Installed version of each package in PACKAGES (None where it is not installed)."""
    return {pkg: _version(pkg) for pkg in PACKAGES}


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """CPU model and the SIMD flags that matter for ORT's kernels (py-cpuinfo, cached)."""
    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception as exc:  # noqa: BLE001 - py-cpuinfo shells out; never fail a run on it
        log.debug("py-cpuinfo failed: %s", exc)
        info = {}
    flags = {f.replace("avx512vnni", "avx512_vnni") for f in info.get("flags", [])}
    return {
        "model": info.get("brand_raw") or platform.processor() or "unknown",
        "arch": info.get("arch_string_raw") or platform.machine(),
        "flags": {f: f in flags for f in CPU_FLAGS},
    }


def git_state(cwd: str | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git repository at `cwd` (None outside a repository)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}
    return {"git_sha": sha, "git_dirty": dirty}


@functools.lru_cache(maxsize=1)
def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs nvidia-smi reports (empty without one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], text=True,
                             capture_output=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def _static_environment() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = cpu_info()
    env: dict[str, Any] = {"python": platform.python_version()}
    env.update(package_versions())
    # with onnxruntime and onnxruntime-gpu both installed, their metadata cannot tell which
    # build Python imports: the module's own version (and its providers) can
    env["onnxruntime_imported"] = ort.__version__
    env.update({
        "ort_providers": ort.get_available_providers(),
        "cpu": cpu["model"],
        "arch": cpu["arch"],
        "cpu_flags": cpu["flags"],
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpu_names(),
        "os": f"{platform.system()} {platform.release()}",
        "hostname": socket.gethostname(),
    })
    return env


def environment() -> dict[str, Any]:
    """Versions, CPU, cores, memory, thread variables, git state of the current directory."""
    env = dict(_static_environment())
    env["thread_env"] = {k: os.environ[k] for k in THREAD_VARS if k in os.environ}
    env.update(git_state())
    return env


def machine_fingerprint() -> str:
    """A short hash of what decides speed: CPU, cores, memory, GPUs, ORT version, OS.

    The hostname is left out, so a rebuilt container or renamed node keeps its fingerprint.
    """
    env = _static_environment()
    key = {
        "cpu": env["cpu"],
        "arch": env["arch"],
        "cores": [env["cores_logical"], env["cores_physical"]],
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "onnxruntime": env["onnxruntime_imported"],
        "os": platform.system(),
        "gpus": env["gpus"],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
