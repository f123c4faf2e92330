"""The layer contract (``[tool.importlinter]`` in pyproject.toml) holds, and can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "provisioning", "ui", "hq", "edged", "drivers", "sync", "edge")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports puts its working directory first on sys.path, so a copied tree is
    # analysed instead of the installed one.
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=tree,
                          capture_output=True, text=True, timeout=60, check=False)


def copy_tree(dst: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_tree_keeps_every_contract() -> None:
    """GIVEN the repository WHEN lint-imports runs THEN every contract is kept."""
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


@pytest.mark.parametrize(("module", "planted", "broken"), [
    ("edge/tokens.py", "import drivers.scan", "edge is not allowed to import drivers"),
    ("edge/rules.py", "import paho.mqtt.client", "edge is not allowed to import paho"),
    ("ui/scan.py", "import edged.daemon", "ui is not allowed to import edged"),
    ("hq/reports/stores.py", "import sync.outbox", "hq is not allowed to import sync"),
    ("drivers/printer.py", "import edge.ledger", "drivers is not allowed to import edge.ledger"),
    ("edged/daemon.py", "import cli.edge", "edged is not allowed to import cli"),
])
def test_a_planted_wrong_import_breaks_the_build(tmp_path: Path, module: str, planted: str,
                                                 broken: str) -> None:
    """GIVEN a copy of the tree with one wrong import WHEN linted THEN it fails, naming it."""
    tree = copy_tree(tmp_path)
    with (tree / module).open("a") as f:
        f.write(f"\n{planted}  # planted\n")
    res = lint(tree)
    assert res.returncode != 0
    assert broken in res.stdout, res.stdout
