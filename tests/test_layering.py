"""Package layering: checkpoint I/O never imports the trainer, and no file imports another
file's private names."""

from __future__ import annotations

import ast
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



def _sources() -> list[Path]:
    root = PACKAGE.parent
    return sorted(p for d in ("data2vec", "benchmarks") for p in (root / d).rglob("*.py"))


def test_no_private_name_is_imported_from_another_file():
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("data2vec"):
                found += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, found
