"""The decorators keep the user's types: `mypy --strict` on a user module shows them.

tests/typing/typed_user.py uses `@task`, `@function` and `@entrypoint`, bare and
with options, sync and async, with `assert_type` on what calls return; this test
runs mypy on it as a user would (from another folder, finding the installed
perdure) and compares the revealed types of the decorated objects.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

#: The line of each `reveal_type(...)` in typed_user.py -> what mypy must reveal.
EXPECTED = {
    "add": "perdure._workflow.Task[[x: int, y: int =], int]",
    "fetch": "perdure._workflow.Task[[url: str], bytes]",
    "slow": "perdure._workflow.Task[[text: str], list[str]]",
    "charge": ("perdure._function.DurableFunction[[order_id: str, cents: int], dict[str, int]]"),
    "refund": "perdure._function.DurableFunction[[order_id: str], bool]",
    "notify": "perdure._function.DurableFunction[[user: str], None]",
    "plain_with_options": "perdure._function.DurableFunction[[n: int], float]",
}


def _mypy(folder: Path, module: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("mypy", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", module.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_user_module_passes_mypy_strict_with_real_types(tmp_path: Path) -> None:
    module = tmp_path / "typed_user.py"
    source = (HERE / "typed_user.py").read_text(encoding="utf-8")
    module.write_text(source, encoding="utf-8")
    done = _mypy(tmp_path, module)
    lines = source.splitlines()
    revealed: dict[str, str] = {}
    errors = []
    for line in done.stdout.splitlines():
        note = re.match(r"typed_user\.py:(\d+): note: Revealed type is \"(.*)\"$", line)
        if note:
            call = re.match(r"reveal_type\((\w+)\)", lines[int(note[1]) - 1])
            assert call, line
            revealed[call[1]] = note[2].replace("builtins.", "")  # older mypy spells them out
        elif ": error:" in line:
            errors.append(line)
    assert not errors, "\n".join(errors)
    assert done.returncode == 0, done.stdout + done.stderr
    assert revealed == EXPECTED
