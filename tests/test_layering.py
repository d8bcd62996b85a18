"""Package layering: checkpoint I/O never imports the trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import data2vec

PACKAGE = Path(data2vec.__file__).parent


def test_checkpoints_do_not_import_the_trainer():
    modules = sorted(f"data2vec.checkpoints.{p.stem}" for p in (PACKAGE / "checkpoints").glob("*.py"))
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) + "import data2vec.models\n"
            "bad = sorted(m for m in sys.modules if m == 'data2vec.train' or m.startswith('data2vec.train.'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)

