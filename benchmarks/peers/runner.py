"""What every implementation offers the suite: a `Runner` that owns a model,
its optimiser state and its batches, runs k training steps, and reports its
parameters in the canonical layout (see `workloads`)."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import jax
import numpy as np

from peers.workloads import Workload


class Unsupported(Exception):
    """An implementation does not run this workload (e.g. an epoch-only runner on a step workload)."""


class Runner:
    """One implementation on one workload, ready to step.

    Subclasses set `name`, build their state in `__init__(wl, weights, data)`
    and define `run`, `params` and, where they can measure it, `memory`.
    `run(k)` starts k steps (cycling over the runner's batches) and returns
    a handle to the k losses without waiting for them; `wait(handle)` blocks
    until those steps and the parameters they wrote are done.

    Example:
        >>> from peers.runner import Runner
        >>> Runner.epoch_only
        False
    """

    name = "?"
    epoch_only = False  # only meaningful over a whole epoch (scans, train_)
    step_only = False   # not offered on the epoch workload

    def run(self, k: int) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def wait(self, out: Any) -> None:
        """Block until the steps that produced `out` (and the parameters) are done."""
        jax.block_until_ready((out, self.state_arrays()))

    def state_arrays(self) -> Any:
        """The arrays a step writes (to wait on them); jax runners override."""
        return None

    def losses(self, out: Any) -> np.ndarray:
        """The losses of a `run` as float64 numpy."""
        return np.asarray(jax.device_get(out), np.float64).reshape(-1)

    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:  # pragma: no cover - interface
        raise NotImplementedError

    def memory(self) -> dict[str, Any] | None:
        """Peak memory of one step, `{"bytes": int, "how": str}`, or None when not measurable."""
        return None


def cycle(batches: list, k: int) -> Any:
    """The first k items of `batches` repeated: the batches a k-step sample sees.

    Example:
        >>> from peers.runner import cycle
        >>> list(cycle([1, 2], 5))
        [1, 2, 1, 2, 1]
    """
    return itertools.islice(itertools.cycle(batches), k)


def device_batches(data: tuple[np.ndarray, np.ndarray]) -> list[tuple[jax.Array, jax.Array]]:
    """The stacked numpy batches as a list of `(x, y)` jax arrays already on the device.

    Example:
        >>> import numpy as np
        >>> from peers.runner import device_batches
        >>> len(device_batches((np.zeros((3, 2, 1)), np.zeros((3, 2, 1)))))
        3
    """
    x, y = data
    return jax.block_until_ready(jax.device_put([(x[i], y[i]) for i in range(x.shape[0])]))


def xla_memory(jitted: Any, *args: Any, how: str = "XLA memory_analysis") -> dict[str, Any] | None:
    """XLA's planned peak for one call of a compiled function: arguments +
    outputs - outputs aliased to donated arguments + temporaries.

    Args:
        jitted: anything with `.lower(*args)` (jax.jit, eqx.filter_jit, nnx.jit).
        args: arguments of one call.
        how: the label stored with the number.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from peers.runner import xla_memory
        >>> xla_memory(jax.jit(lambda a: a + 1), jnp.zeros(256))["bytes"]
        2048
    """
    try:
        compiled = jitted.lower(*args).compile()
        compiled = getattr(compiled, "compiled", compiled)  # eqx.filter_jit wraps jax's Compiled
        m = compiled.memory_analysis()
    except Exception:  # a wrapper without lower(), or a backend without the analysis
        return None
    if m is None:
        return None
    total = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
    return {"bytes": int(total), "how": how, "argument": int(m.argument_size_in_bytes),
            "output": int(m.output_size_in_bytes), "alias": int(m.alias_size_in_bytes),
            "temp": int(m.temp_size_in_bytes)}


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux's VmHWM), in bytes.

    Not `resource.getrusage(...).ru_maxrss`: Linux carries that across fork
    and exec, so a child started by a large parent reports the parent's peak.

    Example:
        >>> from peers.runner import peak_rss_bytes
        >>> peak_rss_bytes() > 0
        True
    """
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb * 1024


def pairs(flat: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """`[w0, b0, w1, b1, ...]` as numpy `(w, b)` pairs.

    Example:
        >>> from peers.runner import pairs
        >>> len(pairs([1.0, 2.0, 3.0, 4.0]))
        2
    """
    arr = [np.asarray(a) for a in flat]
    return list(zip(arr[0::2], arr[1::2]))


Factory = Callable[[Workload, list, tuple], Runner]
