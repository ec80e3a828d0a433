"""The code on the documentation pages runs as written and prints what the
page says it prints.

Each page's ```python blocks (the fluxlike tabs and the PyTorch, Equinox
and Flax tabs next to them) run top to bottom as one script, in a fresh
process and an empty folder, as a reader pasting them would. A
`print(...)  # claim` line is checked against the claim: the first line
printed must start with the claim, or with its head (the part before a
": ", "; " or two spaces, which start an explanation). Claims that are
explanations themselves ("below 1e-7", "about 0.3: wrong order") are
kept as prose; HEDGES lists how they start.

The gallery pages include whole scripts, tested by test_examples.py, and
WALKTHROUGH.md has its own test."""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import textwrap
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDES = sorted(os.path.join("docs", "guides", f) for f in os.listdir(os.path.join(ROOT, "docs", "guides"))
                if f.endswith(".md"))
PAGES = ["README.md", os.path.join("docs", "index.md"), *GUIDES]
EIGHT_DEVICES = {os.path.join("docs", "guides", "scaling.md")}  # shown on a mesh of 8 (simulated) devices
HEDGES = ("below ", "about ", "in some order", "after ", "new arrays", "PyTorch-style")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)

PRELUDE = '''\
import io as _io, sys as _sys
_claims_failed = []

def _checked_print(_line, _claim, *args, **kwargs):
    buf = _io.StringIO()
    print(*args, **kwargs, file=buf)
    _sys.stdout.write(buf.getvalue())
    first = (buf.getvalue().splitlines() or [""])[0].rstrip()
    head = _claim
    for sep in (": ", "; ", "  "):
        head = head.split(sep)[0]
    if not (first.startswith(_claim) or first.startswith(head.rstrip())):
        _claims_failed.append(f"page line {_line}: printed {first!r}, the page says {_claim!r}")
'''
EPILOGUE = '''
if _claims_failed:
    _sys.stderr.write("printed output differs from the page:\\n" + "\\n".join(_claims_failed) + "\\n")
    _sys.exit(2)
'''


def blocks(text: str) -> list[tuple[int, str]]:
    """The page's ```python blocks, dedented, each with the page line its code starts on."""
    return [(text.count("\n", 0, m.start("body")) + 1, textwrap.dedent(m.group("body")))
            for m in FENCE.finditer(text)]


def claimed(code: str, first_line: int) -> str:
    """`code` with each `print(...)  # claim` line made to check its claim."""
    lines = code.splitlines()
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.start[1]
    for n, col in comments.items():
        line = lines[n - 1]
        stmt, claim = line[:col].rstrip(), line[col + 1:].strip()
        m = re.fullmatch(r"(\s*)print\((.*)\)", stmt)
        if not m or not claim or claim.startswith(HEDGES):
            continue
        try:
            ast.parse(stmt.strip())
        except SyntaxError:  # a print spread over several lines
            continue
        lines[n - 1] = f"{m.group(1)}_checked_print({first_line + n - 1}, {claim!r}, {m.group(2)})"
    return "\n".join(lines) + "\n"


def script(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        found = blocks(f.read())
    assert found, f"{page} has no ```python block"
    return PRELUDE + "".join(f"\n# {page}, line {start}\n" + claimed(code, start) for start, code in found) + EPILOGUE


def test_claims_are_read_from_print_lines():
    code = 'x = 3\nprint(x)          # 3\nprint(x + 1)  # 5: wrong\nprint(0.1)  # below 1\n'
    checked = claimed(code, 10)
    assert "_checked_print(11, '3', x)" in checked and "_checked_print(12, '5: wrong', x + 1)" in checked
    assert "print(0.1)  # below 1" in checked  # prose, not a claim
    p = subprocess.run([sys.executable, "-c", PRELUDE + checked + EPILOGUE], capture_output=True, text=True)
    assert p.returncode == 2 and "page line 12: printed '4', the page says '5: wrong'" in p.stderr


@pytest.mark.parametrize("page", PAGES)
def test_the_page_runs_as_written_and_prints_what_it_says(page, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if page in EIGHT_DEVICES:
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    path = tmp_path / "page.py"
    path.write_text(script(page))
    p = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, f"{page}:\n{p.stdout[-1500:]}\n{p.stderr[-3000:]}"
