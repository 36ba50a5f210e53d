"""`make lint` runs import-linter with the contracts in pyproject.toml: these tests show that
it fails when someone adds an upward import, a torch import in annotation, or a Django import
in a maths module (on a copy of the tree, so that the real one stays clean)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("core", "annotation", "scoring", "curation")
LINT = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def tree(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "templates", "static", "fixtures"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_as_it_is_keeps_every_contract(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "annotation/services/upward.py",
            "from scoring.models import ModelVersion\n",
            "Apps depend one way: curation -> scoring -> annotation -> core BROKEN",
        ),
        (
            "core/upward.py",
            "import annotation.models\n",
            "Apps depend one way: curation -> scoring -> annotation -> core BROKEN",
        ),
        (
            "annotation/services/heavy.py",
            "import torch\n",
            "annotation and core never import torch or the model libraries BROKEN",
        ),
        (
            "curation/detectors.py",
            "from django.db import connection\n",
            "The maths and ML modules import no Django BROKEN",
        ),
    ],
)
def test_lint_fails_on_an_import_that_breaks_the_layering(tree, module, line, contract):
    path = tree / module
    path.write_text((path.read_text() if path.exists() else "") + line)
    result = _lint(tree)
    assert result.returncode != 0
    assert contract in result.stdout, result.stdout
