"""The tests that drop privileges pass from a checkout in a private (0700) directory.

A clone under /root or in a `mktemp -d` directory can be entered only by root, so a
test that gives up root and then reads a file of the checkout (a lazy import from
its .venv, say) fails there and nowhere else (issue 23). This check shows this very
checkout, .venv included, at a path inside a fresh 0700 directory (a bind mount in a
mount namespace of its own: nothing copied, nothing left mounted) and runs those
tests there with pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import requires_root

ROOT = Path(__file__).resolve().parent.parent
PRIVILEGE_DROPPING = (
    "tests/test_demo_cli.py::test_demo_refuses_without_root",
    "tests/test_router_cli.py::test_refuses_without_cap_net_admin",
)
DROPS_PRIVILEGE = re.compile(r"\bos\.set(?:e|re|res)?[ug]id\(|\bsetfsuid\(|\"setpriv\"")

# in a mount namespace of its own, show the checkout ($1) at its place in the private
# directory ($2) and run the interpreter ($3) there on the remaining arguments
MOUNT_AND_RUN = 'mount --bind "$1" "$2" && cd "$2" && python=$3 && shift 3 && exec "$python" "$@"'
IN_PRIVATE_DIRECTORY = ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_AND_RUN]


def test_every_test_file_that_drops_privileges_is_run_from_a_private_directory() -> None:
    dropping = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").glob("test_*.py")
        if path != Path(__file__).resolve() and DROPS_PRIVILEGE.search(path.read_text())
    }
    assert dropping == {test.split("::")[0] for test in PRIVILEGE_DROPPING}


@requires_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_privilege_dropping_tests_pass_from_a_private_directory(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    clone = private / "clone"
    clone.mkdir()
    python = Path(sys.executable)
    if python.is_relative_to(ROOT):  # the usual .venv inside the checkout: seen from there
        python = clone / python.relative_to(ROOT)
    basetemp = f"--basetemp={private / 'tmp'}"
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", basetemp, *PRIVILEGE_DROPPING]
    result = subprocess.run(
        [*IN_PRIVATE_DIRECTORY, "sh", str(ROOT), str(clone), str(python), *pytest_args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"{len(PRIVILEGE_DROPPING)} passed" in output, output[-4000:]
