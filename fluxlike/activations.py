"""Activation functions under Flux's (NNlib's) names, with NNlib's formulas and defaults.

They are plain JAX functions; a layer stores its activation as static
configuration and prints it by name (`Dense(2 => 3, relu)`).

NNlib's Unicode names have their ASCII twins here: `σ` is `sigmoid`, `hardσ`
`hardsigmoid`, `logσ` `logsigmoid`. NNlib's aliases and speed variants
(`gelu_tanh` and `gelu_sigmoid` = `gelu`, `thresholdrelu` = `trelu`,
`tanh_fast`, `sigmoid_fast`) are not repeated: XLA already fuses these.
Extra arguments (slopes, thresholds) keep NNlib's defaults; bind them with
`functools.partial` to use them as a layer's activation.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from ._keys import as_key

__all__ = [
    "identity", "relu", "sigmoid", "tanh", "softmax", "logsoftmax", "logsumexp", "leakyrelu",
    "rrelu", "elu", "gelu", "gelu_erf", "swish", "hardswish", "softplus", "selu", "celu", "relu6",
    "hardtanh", "hardsigmoid", "logsigmoid", "logcosh", "mish", "softsign", "lisht", "tanhshrink",
    "softshrink", "trelu",
]


def identity(x: jax.Array) -> jax.Array:
    """The identity, the default activation of every layer.

    Examples:
        >>> import fluxlike as fl
        >>> fl.identity(3.0)
        3.0
    """
    return x


def relu(x: jax.Array) -> jax.Array:
    """`max(x, 0)`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.relu(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """
    return jax.nn.relu(x)


def sigmoid(x: jax.Array) -> jax.Array:
    """`1 / (1 + exp(-x))` (Flux's `σ`).

    Examples:
        >>> import fluxlike as fl
        >>> float(fl.sigmoid(0.0))
        0.5
    """
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent.

    Examples:
        >>> import fluxlike as fl
        >>> float(fl.tanh(0.0))
        0.0
    """
    return jnp.tanh(x)


def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """`exp(x) / sum(exp(x))` along `axis` (the class axis, last by default).

    Args:
        x: an array.
        axis: the class axis (NNlib's `dims=1`, the first axis in column-major order).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.softmax(jnp.zeros((1, 4)))
        Array([[0.25, 0.25, 0.25, 0.25]], dtype=float32)
    """
    return jax.nn.softmax(x, axis=axis)


def logsoftmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """`x - logsumexp(x)` along `axis` (the class axis, last by default).

    Args:
        x: an array.
        axis: the class axis.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.logsoftmax(jnp.zeros(2))
        Array([-0.6931472, -0.6931472], dtype=float32)
    """
    return jax.nn.log_softmax(x, axis=axis)


def leakyrelu(x: jax.Array, a: float = 0.01) -> jax.Array:
    """`max(a*x, x)`, with NNlib's default slope 0.01.

    Args:
        x: an array.
        a: the slope for negative inputs.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.leakyrelu(jnp.array([-1.0, 1.0]))
        Array([-0.01,  1.  ], dtype=float32)
    """
    return jnp.where(x > 0, x, a * x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """`x` for x > 0, else `alpha * (exp(x) - 1)`.

    Args:
        x: an array.
        alpha: the scale of the negative part (NNlib's `α = 1`).

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.elu(-1.0)), 4)
        -0.6321
    """
    return jax.nn.elu(x, alpha)


def gelu(x: jax.Array) -> jax.Array:
    """GELU, the tanh approximation (NNlib's `gelu`).

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.gelu(1.0)), 4)
        0.8412
    """
    return jax.nn.gelu(x, approximate=True)


def swish(x: jax.Array) -> jax.Array:
    """`x * sigmoid(x)`.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.swish(1.0)), 4)
        0.7311
    """
    return jax.nn.silu(x)


def softplus(x: jax.Array) -> jax.Array:
    """`log(1 + exp(x))`, computed stably.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.softplus(0.0)), 4)
        0.6931
    """
    return jax.nn.softplus(x)


def selu(x: jax.Array) -> jax.Array:
    """Scaled ELU with the self-normalising constants.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.selu(1.0)), 4)
        1.0507
    """
    return jax.nn.selu(x)


def celu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """`max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`.

    Args:
        x: an array.
        alpha: NNlib's `α = 1`.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.celu(-1.0)), 4)
        -0.6321
    """
    return jax.nn.celu(x, alpha)


def relu6(x: jax.Array) -> jax.Array:
    """`min(max(x, 0), 6)`.

    Examples:
        >>> import fluxlike as fl
        >>> float(fl.relu6(7.0))
        6.0
    """
    return jnp.clip(x, 0, 6)


def hardtanh(x: jax.Array) -> jax.Array:
    """`clamp(x, -1, 1)`.

    Examples:
        >>> import fluxlike as fl
        >>> float(fl.hardtanh(-3.0))
        -1.0
    """
    return jnp.clip(x, -1, 1)


def hardsigmoid(x: jax.Array) -> jax.Array:
    """NNlib's `hardσ`: `max(0, min(1, (x + 3) / 6))`.

    Examples:
        >>> import fluxlike as fl
        >>> float(fl.hardsigmoid(0.0))
        0.5
    """
    return jnp.clip((x + 3) / 6, 0, 1)


def logsigmoid(x: jax.Array) -> jax.Array:
    """`log(sigmoid(x))`, computed stably (NNlib's `logσ`).

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.logsigmoid(0.0)), 4)
        -0.6931
    """
    return jax.nn.log_sigmoid(x)


def mish(x: jax.Array) -> jax.Array:
    """`x * tanh(softplus(x))`.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.mish(1.0)), 4)
        0.8651
    """
    return x * jnp.tanh(jax.nn.softplus(x))


def softsign(x: jax.Array) -> jax.Array:
    """`x / (1 + |x|)`.

    Examples:
        >>> import fluxlike as fl
        >>> float(fl.softsign(1.0))
        0.5
    """
    return x / (1 + jnp.abs(x))


def logsumexp(x: jax.Array, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> jax.Array:
    """`log(sum(exp(x)))` over `axis`, computed stably (NNlib's `logsumexp`).

    Args:
        x: an array.
        axis: the axes to reduce; None (NNlib's default `dims=:`) reduces all.
        keepdims: keep the reduced axes with size 1 (Julia's reductions always do).

    Examples:
        >>> import jax.numpy as jnp
        >>> import fluxlike as fl
        >>> fl.logsumexp(jnp.zeros((2, 2)))
        Array(1.3862944, dtype=float32)
    """
    return jax.nn.logsumexp(x, axis=axis, keepdims=keepdims)


def rrelu(x: jax.Array, lo: float = 1 / 8, hi: float = 1 / 3, *, key: Any = None) -> jax.Array:
    """Randomised leaky relu: `max(a*x, x)` with a fresh slope `a ~ U(lo, hi)` per element.

    NNlib draws from a global RNG; here the randomness is explicit: pass `key`
    (a PRNG key or int seed); None draws from `fl.seed`'s stream, which only
    works outside `jax.jit`.

    Args:
        x: an array.
        lo: the smallest slope (NNlib's default 1/8).
        hi: the largest slope (NNlib's default 1/3).
        key: a PRNG key or int seed.

    Examples:
        >>> import jax.numpy as jnp
        >>> import fluxlike as fl
        >>> y = fl.rrelu(jnp.full(1000, -10.0), key=0)
        >>> bool(y.min() >= -10 / 3), bool(y.max() <= -10 / 8)
        (True, True)
    """
    x = jnp.asarray(x)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    a = jax.random.uniform(as_key(key), x.shape, dtype, lo, hi)
    return jnp.where(x > 0, x, a * x).astype(dtype)


def gelu_erf(x: jax.Array) -> jax.Array:
    """Exact GELU, `0.5x * (1 + erf(x / sqrt(2)))` (NNlib's `gelu_erf`).

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.gelu_erf(1.0)), 4)
        0.8413
    """
    return jax.nn.gelu(x, approximate=False)


def hardswish(x: jax.Array) -> jax.Array:
    """`x * hardsigmoid(x)` (MobileNetV3).

    Examples:
        >>> import jax.numpy as jnp
        >>> import fluxlike as fl
        >>> fl.hardswish(jnp.array([-4.0, 1.0, 4.0])).round(4)
        Array([-0.    ,  0.6667,  4.    ], dtype=float32)
    """
    return x * hardsigmoid(x)


def logcosh(x: jax.Array) -> jax.Array:
    """`log(cosh(x))`, computed stably as `x + softplus(-2x) - log(2)`.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.logcosh(100.0)), 4)  # 100 - log(2), no overflow
        99.3069
    """
    return x + jax.nn.softplus(-2 * x) - math.log(2)


def lisht(x: jax.Array) -> jax.Array:
    """`x * tanh(x)` (LiSHT).

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.lisht(-1.0)), 4)
        0.7616
    """
    return x * jnp.tanh(x)


def tanhshrink(x: jax.Array) -> jax.Array:
    """`x - tanh(x)`.

    Examples:
        >>> import fluxlike as fl
        >>> float(fl.tanhshrink(10.0))
        9.0
    """
    return x - jnp.tanh(x)


def softshrink(x: jax.Array, lambd: float = 0.5) -> jax.Array:
    """`x - lambd` above `lambd`, `x + lambd` below `-lambd`, else 0.

    Args:
        x: an array.
        lambd: the threshold (NNlib's `λ = 0.5`; `lambda` is reserved in Python).

    Examples:
        >>> import jax.numpy as jnp
        >>> import fluxlike as fl
        >>> fl.softshrink(jnp.array([-10.0, 0.3, 10.0]))
        Array([-9.5,  0. ,  9.5], dtype=float32)
    """
    return jnp.where(x > lambd, x - lambd, jnp.where(x < -lambd, x + lambd, jnp.zeros_like(x)))


def trelu(x: jax.Array, theta: float = 1.0) -> jax.Array:
    """Threshold relu: `x` where `x > theta`, else 0.

    Args:
        x: an array.
        theta: the threshold (NNlib's default 1).

    Examples:
        >>> import jax.numpy as jnp
        >>> import fluxlike as fl
        >>> fl.trelu(jnp.array([0.5, 1.0, 2.0]))
        Array([0., 0., 2.], dtype=float32)
    """
    return jnp.where(x > theta, x, jnp.zeros_like(x))
