"""Every example runs in its short mode (`--short`: a few steps on a little
data, no figures), as a user would run it: its own process, from another
folder, on one device (data_parallel simulates its 8 itself)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "examples"))
                  if f.endswith(".py") and not f.startswith("_"))
LAST_LINE = {  # what each example's last line says; a new example adds its own (its numbers vary with the short run)
    "quickstart": "held-out accuracy",
    "cnn": "held-out accuracy",
    "sequence": "held-out MSE",
    "resume": "every array bit for bit: True",
    "data_parallel": "every layout equals one device up to reduction order: True",
    "finetune": "the frozen body did not move: True",
    "schedules": "for the 4 runs",
    "charlm": "held-out bits per character",
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_runs_in_its_short_mode(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", f"{name}.py"), "--short"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    last = p.stdout.strip().splitlines()[-1]
    assert LAST_LINE[name] in last, last
    assert "wrote " not in p.stdout, "the short mode writes no figures"
    assert not any(f.endswith(".png") for _, _, fs in os.walk(tmp_path) for f in fs)
