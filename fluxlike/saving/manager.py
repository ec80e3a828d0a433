"""`CheckpointManager`: a folder of checkpoints by step, the last few kept
(and optionally the best by a metric), restoring the newest that loads."""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any

from ..data import DataLoader
from . import _safetensors
from ._atomic import barrier, primary, remove_stale, temp_files
from .checkpoint import loadcheckpoint_, savecheckpoint

__all__ = ["CheckpointManager"]

_NAME = "step-{:09d}.safetensors"
_PATTERN = re.compile(r"^step-(\d{9,})\.safetensors$")


class CheckpointManager:
    """Checkpoints of one run in `directory`, one file per step
    (`step-000001200.safetensors`), each written atomically by
    `fl.savecheckpoint`.

    After each save only the newest `keep` files stay, plus, with `best`,
    the one whose metadata value `best` (a number, written by you in
    `metadata`) is lowest (`mode="min"`) or highest (`mode="max"`).
    `restore_` loads the newest checkpoint; when that file is damaged (a disk
    error, a copy cut short) it warns and falls back to the one before.

    Args:
        directory: the folder (created if missing).
        keep: how many of the newest checkpoints to keep (at least 1).
        best: a metadata key whose value ranks checkpoints; that best one is kept too.
        mode: "min" or "max", how `best` ranks.

    Examples:
        >>> import tempfile, fluxlike as fl
        >>> model = fl.Dense(2, 1)
        >>> state = fl.setup(fl.Adam(), model)
        >>> ckpt = fl.CheckpointManager(tempfile.mkdtemp(), keep=2)
        >>> for step in (100, 200, 300):
        ...     _ = ckpt.save(step, model, state)
        >>> ckpt.steps(), ckpt.latest()
        ([200, 300], 300)
        >>> ckpt.restore_(model, state)["step"]
        300
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, best: str | None = None,
                 mode: str = "min") -> None:
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"CheckpointManager: keep must be an int >= 1, got {keep!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"CheckpointManager: mode must be 'min' or 'max', got {mode!r}")
        if best is not None and not isinstance(best, str):
            raise TypeError(f"CheckpointManager: best must be a metadata key (a str) or None, got {best!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise NotADirectoryError(f"CheckpointManager: {self.directory} exists and is not a folder")
        os.makedirs(self.directory, exist_ok=True)
        self.keep, self.best, self.mode = keep, best, mode

    def __repr__(self) -> str:
        extra = f", best={self.best!r}, mode={self.mode!r}" if self.best else ""
        return f"CheckpointManager({self.directory!r}, keep={self.keep}{extra})"

    def path(self, step: int) -> str:
        """The file of `step` (whether or not it exists).

        Examples:
            >>> import fluxlike as fl
            >>> fl.CheckpointManager("/tmp/run").path(42)
            '/tmp/run/step-000000042.safetensors'
        """
        return os.path.join(self.directory, _NAME.format(int(step)))

    def steps(self) -> list[int]:
        """The steps that have a checkpoint file, oldest first."""
        out = []
        for name in os.listdir(self.directory):
            m = _PATTERN.match(name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def latest(self) -> int | None:
        """The newest step with a checkpoint, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, model: Any, state: Any, *, loader: DataLoader | None = None,
             metadata: dict[str, str] | None = None) -> str:
        """`fl.savecheckpoint` at this step's file, then prune to `keep` (and
        the best); returns the file's path."""
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"CheckpointManager.save: step must be an int >= 0, got {step!r}")
        if self.best is not None:
            value = (metadata or {}).get(self.best)
            if value is None or not _number(value):
                raise ValueError(f"CheckpointManager.save: this manager keeps the best by {self.best!r}, so "
                                 f"metadata must hold {self.best!r} as a number in a str, e.g. "
                                 f"metadata={{{self.best!r}: str(value)}}; got {value!r}")
        path = self.path(step)
        if primary():  # with several processes, process 0 alone writes and removes files
            remove_stale(self.directory, "step-*")  # saves of any step killed midway
        savecheckpoint(path, model, state, loader=loader, step=step, metadata=metadata)
        if primary():
            self._prune()
        barrier(f"fluxlike: pruned {self.directory}")
        return path

    def _best_step(self, steps: list[int]) -> int | None:
        if self.best is None:
            return None
        scored = []
        for s in steps:
            try:
                _, meta = _safetensors.read_metadata(self.path(s), "CheckpointManager")
            except (OSError, _safetensors.BadFile):
                continue
            v = meta.get(self.best)
            if v is not None and _number(v):
                scored.append((float(v) if self.mode == "min" else -float(v), -s, s))
        return min(scored)[2] if scored else None

    def _prune(self) -> None:
        steps = self.steps()
        keep = set(steps[-self.keep:])
        best = self._best_step(steps)
        if best is not None:
            keep.add(best)
        for s in steps:
            if s not in keep:
                try:
                    os.unlink(self.path(s))
                except FileNotFoundError:
                    pass

    def restore_(self, model: Any, state: Any, *, loader: DataLoader | None = None,
                 step: int | None = None) -> dict[str, Any] | None:
        """Load the checkpoint of `step` (default: the newest) into `model`,
        `state` and `loader` with `fl.loadcheckpoint_`; returns its info, or
        None when the folder holds no checkpoint. Without `step`, a damaged
        newest file is skipped with a warning and the one before is tried."""
        if step is not None:
            if step not in self.steps():
                raise FileNotFoundError(f"CheckpointManager.restore_: no checkpoint of step {step} in "
                                        f"{self.directory}; there are {self.steps()}")
            return loadcheckpoint_(self.path(step), model, state, loader=loader)
        steps = self.steps()
        for s in reversed(steps):
            try:
                return loadcheckpoint_(self.path(s), model, state, loader=loader)
            except _safetensors.BadFile as e:  # another model's or rule's checkpoint is the user's to fix: raised
                warnings.warn(f"CheckpointManager: skipping the damaged checkpoint of step {s}: {e}", stacklevel=2)
        if steps:
            raise ValueError(f"CheckpointManager.restore_: every checkpoint in {self.directory} is damaged "
                             f"(steps {steps})")
        return None

    def temp_files(self) -> list[str]:
        """Temporary files of unfinished saves in the folder (a save killed
        midway leaves one, removed by the next save)."""
        return temp_files(self.directory, "step-*")


def _number(v: str) -> bool:
    try:
        return not math.isnan(float(v))
    except (TypeError, ValueError):
        return False
