"""Fuzzing: every kept finding stays fixed, and each target survives a short coverage-guided
run (atheris). ``make fuzz`` runs the same targets for longer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS, seeds
from tests.system.proof import record

ROOT = Path(__file__).resolve().parent.parent
CRASHES = ROOT / "tests" / "fuzz" / "crashes"
SECONDS = int(os.environ.get("FUZZ_SECONDS", "6"))


def kept(target: str) -> list[Path]:
    folder = CRASHES / target
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_and_kept_findings_pass_the_target(target: str) -> None:
    """GIVEN a target's valid seeds and every input a fuzz run ever flagged for it
    WHEN each goes through the target in this process
    THEN no invariant breaks and nothing raises."""
    inputs = seeds(target) + [p.read_bytes() for p in kept(target)]
    assert inputs
    for data in inputs:
        TARGETS[target](data)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_short_fuzz_run_finds_nothing(target: str) -> None:
    """GIVEN a target WHEN atheris mutates its seeds for a few seconds (fixed seed)
    THEN it ran many inputs and found no crash and no forged input accepted."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "tests.fuzz.run", target, "--seconds",
                          str(SECONDS)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=SECONDS + 60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    runs = next(int(line.split(":")[-1]) for line in res.stderr.splitlines()
                if line.startswith("stat::number_of_executed_units"))
    record(f"fuzz: {target}", runs=1, faults=runs, crashes=int(res.returncode != 0))
    assert runs > 1000
