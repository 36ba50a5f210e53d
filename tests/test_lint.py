"""`make lint`'s ESLint step (`npm run lint`) on page scripts: a real mistake fails it.

Each test lays out the lint setup as the repository has it (package.json, eslint.config.mjs,
node_modules) around one script in static/js/ of a temporary folder, and runs the npm
script that `make lint` runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
(() => {
  "use strict";
  const { toast } = window.labelPage;
  if (window.htmx) htmx.config.allowScriptTags = false;
  document.addEventListener("click", () => toast(performance.now().toFixed(0)));
})();
"""


def _lint(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    if not (ROOT / "node_modules" / "eslint").is_dir():
        pytest.fail("ESLint is not installed: run `npm ci` (make lint and make test do)")
    for name in ("package.json", "eslint.config.mjs"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    (tmp_path / "static" / "js").mkdir(parents=True)
    (tmp_path / "static" / "js" / "page.js").write_text(script)
    return subprocess.run(
        ["npm", "run", "--silent", "lint"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_page_script_may_use_browser_globals_htmx_and_window_objects(tmp_path):
    result = _lint(tmp_path, GOOD)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (GOOD.replace("toast(performance", "taost(performance"), "'taost' is not defined"),
        ('"use strict";\nfunction helper() {}\n', "no-implicit-globals"),
        (GOOD.replace("const { toast }", "var { toast }"), "no-var"),
    ],
    ids=["undefined-name", "top-level-global", "var"],
)
def test_a_mistake_in_a_page_script_fails_the_lint(tmp_path, mistake, message):
    result = _lint(tmp_path, mistake)

    assert result.returncode != 0
    assert message in result.stdout, result.stdout + result.stderr
    assert "page.js" in result.stdout
