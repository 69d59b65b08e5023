"""The C++ kernel headers build and run without Python, with and without OpenMP."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("openmp", [True, False])
def test_header_only_kernel_builds_and_runs(tmp_path, openmp):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH")
    exe = tmp_path / "smoke"
    cmd = [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'cpp' / 'include'}",
           str(ROOT / "tests" / "cpp" / "smoke.cpp"), "-o", str(exe)]
    if openmp:
        cmd.insert(1, "-fopenmp")
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == f"ok (openmp {int(openmp)})"
