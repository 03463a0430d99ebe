"""The README's demo command runs every demo step to completion at 2 ranks."""

import os
import sys

import pytest

from conftest import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.mpi


def test_demo_runs_every_step():
    result = launch([sys.executable, "-m", "hpcml", "demo", "--ranks", "2"], cwd=ROOT, timeout=900)
    assert result.returncode == 0, result
    assert "demo finished" in result.stdout


def test_demo_refuses_a_missing_step_list(tmp_path):
    result = launch([sys.executable, "-m", "hpcml", "demo", "--jobs", str(tmp_path / "none.toml")])
    assert result.returncode == 2 and "no such file" in result.stderr
