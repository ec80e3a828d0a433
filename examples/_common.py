"""What every example shares: its command line and where its figures go.

Every example runs in two modes:

    python examples/NAME.py            # full: trains fully, writes its figures
    python examples/NAME.py --short    # CI: a few steps on a little data, no figures

`--figures DIR` writes the figures to DIR (default `docs/gallery/figures`,
where the gallery pages look for them); `--no-figures` writes none. The
figures need matplotlib (`pip install -e '.[examples]'`); it is imported only
when a figure is drawn.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(ROOT, "docs", "gallery", "figures")


def options(doc: str | None, argv: list[str] | None = None,
            extra: Any = None) -> argparse.Namespace:
    """The example's options: `short` (bool) and `figures` (a folder, or None
    for none). `extra(parser)` may add the example's own options.

    Example:
        >>> options("An example.", ["--short"]).figures is None
        True
        >>> options("An example.", ["--figures", "/tmp/f"]).figures
        '/tmp/f'
    """
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--short", action="store_true",
                    help="a few steps on a little data, for CI (no figures unless --figures)")
    ap.add_argument("--figures", metavar="DIR", default=None,
                    help=f"write the figures here (default: {os.path.relpath(FIGURES, ROOT)}; "
                         "none with --short)")
    ap.add_argument("--no-figures", action="store_true", help="write no figures")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    if args.no_figures:
        args.figures = None
    elif args.figures is None and not args.short:
        args.figures = FIGURES
    return args


def pyplot() -> Any:
    """matplotlib's pyplot on a file-only backend (no window, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig(fig: Any, folder: str | None, name: str) -> str | None:
    """Save `fig` as `folder/name.png` (the folder is created) and close it;
    nothing when `folder` is None. Returns the path written, and prints it.

    Example:
        >>> savefig(None, None, "unused") is None
        True
    """
    if folder is None:
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    print(f"wrote {os.path.relpath(path, ROOT) if path.startswith(ROOT) else path}")
    return path


def loss_figure(losses: list[float], title: str = "loss") -> tuple[Any, Any]:
    """A figure of two panels: the mean training loss per epoch on the left
    (log scale), and an empty right panel (returned) for the example's own
    metric against the same epochs.

    Examples:
        >>> fig, right = loss_figure([1.0, 0.5])
        >>> len(fig.axes), right.get_title()
        (2, '')
    """
    import numpy as np

    fig, (left, right) = pyplot().subplots(1, 2, figsize=(9, 3.4))
    left.plot(np.arange(1, len(losses) + 1), losses, marker="o", ms=3)
    left.set(xlabel="epoch", ylabel="mean training loss", yscale="log", title=title)
    return fig, right
