"""`llm` is framework-free: importing all of it must not import Django."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import llm

PACKAGE = Path(llm.__file__).resolve().parent
MODULES = [
    "llm",
    "llm.errors",
    "llm.types",
    "llm.retry",
    "llm.tokens",
    "llm.transport",
    "llm.handler",
    "llm.providers",
    "llm.providers.base",
    "llm.providers.openai_compat",
    "llm.providers.anthropic",
    "llm.providers.local",
    "llm.fake_upstream",
]


def test_importing_every_module_does_not_import_django() -> None:
    code = f"import sys\nimport {', '.join(MODULES)}\nassert 'django' not in sys.modules, 'django imported'\n"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr


def test_no_source_file_mentions_django_in_an_import() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(PACKAGE)}: {name}" for name in names if name.split(".")[0] == "django"]
    assert offenders == []


def test_the_public_api_is_explicit() -> None:
    assert sorted(llm.__all__) == sorted(set(llm.__all__))
    for name in llm.__all__:
        assert hasattr(llm, name), name
