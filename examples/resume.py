"""Checkpoints and exact resume: a digits classifier (scikit-learn's 8x8
digits, 1797 real images) trains with a CheckpointManager saving every
epoch; the run is SIGKILLed mid-training, restarted, and picks up from its
newest checkpoint. Then it checks the result against a run that was never
interrupted: the final weights are bit-identical, with Dropout, BatchNorm, a
shuffled DataLoader and a learning-rate step in play.

    python examples/resume.py [--epochs 12] [--kill-after 5] [--dir runs/resume]
    python examples/resume.py --short    # 2 epochs, killed after 1, no figures (CI)

The full run draws both runs' loss per epoch, the kill marked.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import options, pyplot, savefig
from sklearn.datasets import load_digits

import fluxlike as fl


def data():
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")
    perm = np.random.default_rng(0).permutation(len(X))
    return X, digits.target, perm[:1400], perm[1400:]


def worker(folder: str, epochs: int, seed: int) -> None:
    """Train to `epochs`, resuming from the newest checkpoint in `folder` if there is one."""
    X, y, train, test = data()
    Y = np.asarray(fl.onehotbatch(y, range(10)))
    fl.seed(seed)  # a restarted run builds fresh objects; the checkpoint overwrites all of it
    model = fl.Chain(fl.Dense(64, 128), fl.BatchNorm(128, fl.relu), fl.Dropout(0.2), fl.Dense(128, 10))
    state = fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam(1e-3)), model)
    loader = fl.DataLoader((X[train], Y[train]), batchsize=32, shuffle=True, rng=seed)
    ckpt = fl.CheckpointManager(folder, keep=2, best="test_acc", mode="max")
    info = ckpt.restore_(model, state, loader=loader)
    start = 0 if info is None else info["step"]
    if info is not None:
        print(f"resumed from {os.path.basename(info['path'])} (epoch {start}, test acc {info['metadata']['test_acc']})",
              flush=True)

    def loss(m, x, y):
        return fl.losses.logitcrossentropy(m(x), y)

    for epoch in range(start + 1, epochs + 1):
        if epoch == 8:
            fl.adjust_(state, 3e-4)  # lands in the checkpoint: a resumed run keeps it
        losses = fl.train_(loss, model, loader, state)
        fl.testmode_(model)
        acc = float(jnp.mean(fl.onecold(model(X[test])) == y[test]))
        fl.trainmode_(model, None)
        ckpt.save(epoch, model, state, loader=loader, metadata={"test_acc": f"{acc:.4f}"})
        print(f"epoch {epoch:3d}  loss {losses.mean():.4f}  test acc {acc:.3f}  (saved)", flush=True)
    fl.savemodel(os.path.join(folder, "final.safetensors"), model)


def spawn(folder: str, epochs: int, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", folder, str(epochs), str(seed)],
                            stdout=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> bool:
    def extra(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--epochs", type=int, default=None, help="epochs to train (default 12; 2 with --short)")
        ap.add_argument("--kill-after", type=int, default=None,
                        help="SIGKILL the run once this epoch is saved (default 5; 1 with --short)")
        ap.add_argument("--dir", default=os.path.join("runs", "resume"))
        ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)

    args = options(__doc__, argv, extra)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return True
    args.epochs = args.epochs or (2 if args.short else 12)
    args.kill_after = args.kill_after or (1 if args.short else 5)
    curves: dict[str, dict[int, float]] = {"killed, then resumed": {}, "never interrupted": {}}

    def record(run: str, line: str) -> None:
        m = re.match(r"\s*epoch\s+(\d+)\s+loss ([0-9.]+)", line)
        if m:
            curves[run][int(m.group(1))] = float(m.group(2))
    killed, straight = os.path.join(args.dir, "killed"), os.path.join(args.dir, "straight")
    for d in (killed, straight):
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    print(f"run 1: trains {args.epochs} epochs, killed (SIGKILL) while epoch {args.kill_after + 1} runs")
    p = spawn(killed, args.epochs, seed=0)
    for line in p.stdout:
        print("  " + line.rstrip())
        record("killed, then resumed", line)
        if line.startswith(f"epoch {args.kill_after:3d}"):
            p.send_signal(signal.SIGKILL)
            break
    p.wait()
    print(f"  ... killed (exit code {p.returncode}); checkpoints on disk: {fl.CheckpointManager(killed).steps()}")
    print("run 1, restarted (fresh objects from another seed):")
    p = spawn(killed, args.epochs, seed=123)
    for line in p.stdout:
        print("  " + line.rstrip())
        record("killed, then resumed", line)
    assert p.wait() == 0, "the resumed run failed"
    print("run 2: the same training, never interrupted")
    p = spawn(straight, args.epochs, seed=0)
    out = p.communicate()[0]
    assert p.returncode == 0, "the uninterrupted run failed"
    print("  " + out.strip().splitlines()[-1])
    for line in out.splitlines():
        record("never interrupted", line)
    a, b = (fl.Chain(fl.Dense(64, 128), fl.BatchNorm(128, fl.relu), fl.Dropout(0.2), fl.Dense(128, 10)) for _ in "ab")
    fl.loadmodel_(a, os.path.join(killed, "final.safetensors"))
    fl.loadmodel_(b, os.path.join(straight, "final.safetensors"))
    same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(f"killed-and-resumed run == uninterrupted run, every array bit for bit: {same} "
          f"({time.perf_counter() - t0:.1f} s)")
    if args.figures:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for (run, c), style in zip(curves.items(), ({"marker": "o", "ms": 7, "mfc": "none"}, {"marker": "x"})):
            ax.plot(list(c), list(c.values()), label=run, **style)
        ax.axvline(args.kill_after + 0.5, color="C3", ls="--", lw=1)
        ax.text(args.kill_after + 0.6, max(curves["never interrupted"].values()), "SIGKILL", color="C3", fontsize=8)
        ax.set(xlabel="epoch", ylabel="mean training loss", yscale="log",
               title="a killed run resumes on the uninterrupted run's curve")
        ax.legend()
        savefig(fig, args.figures, "resume-curves")
    return same


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
