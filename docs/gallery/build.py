"""Run every example of the gallery in its full mode: each writes its figures
to docs/gallery/figures/, and its printed output goes to
docs/gallery/output/NAME.txt, which its page includes.

    python docs/gallery/build.py                 # every example (about 10 minutes on 2 CPU cores)
    python docs/gallery/build.py cnn sequence    # some of them
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(ROOT, "examples")


def examples() -> list[str]:
    """The gallery's examples: every script in examples/ but the shared `_common`."""
    return sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_"))


def run(name: str) -> None:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{name}.py")], cwd=ROOT, capture_output=True,
                       text=True)
    if p.returncode != 0:
        sys.exit(f"{name} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    os.makedirs(os.path.join(HERE, "output"), exist_ok=True)
    with open(os.path.join(HERE, "output", f"{name}.txt"), "w") as f:
        f.write(p.stdout)
    print(f"{name}: {time.perf_counter() - t0:.0f} s, {len(p.stdout.splitlines())} lines of output")


if __name__ == "__main__":
    for name in sys.argv[1:] or examples():
        run(name)
