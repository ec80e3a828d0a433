"""Activation functions under Flux's (NNlib's) names.

They are plain JAX functions; a layer stores its activation as static
configuration and prints it by name (`Dense(2 => 3, relu)`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["identity", "relu", "sigmoid", "tanh", "softmax", "logsoftmax", "leakyrelu", "elu", "gelu", "swish", "softplus", "selu", "celu", "relu6", "hardtanh", "hardsigmoid", "logsigmoid", "mish", "softsign"]


def identity(x: jax.Array) -> jax.Array:
    """The identity, the default activation of every layer.

    Example:
        >>> import fluxlike as fl
        >>> fl.identity(3.0)
        3.0
    """
    return x


def relu(x: jax.Array) -> jax.Array:
    """`max(x, 0)`.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.relu(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """
    return jax.nn.relu(x)


def sigmoid(x: jax.Array) -> jax.Array:
    """`1 / (1 + exp(-x))` (Flux's `σ`).

    Example:
        >>> import fluxlike as fl
        >>> float(fl.sigmoid(0.0))
        0.5
    """
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent.

    Example:
        >>> import fluxlike as fl
        >>> float(fl.tanh(0.0))
        0.0
    """
    return jnp.tanh(x)


def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """`exp(x) / sum(exp(x))` along `axis` (the class axis, last by default).

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.softmax(jnp.zeros((1, 4)))
        Array([[0.25, 0.25, 0.25, 0.25]], dtype=float32)
    """
    return jax.nn.softmax(x, axis=axis)


def logsoftmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """`x - logsumexp(x)` along `axis` (the class axis, last by default).

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.logsoftmax(jnp.zeros(2))
        Array([-0.6931472, -0.6931472], dtype=float32)
    """
    return jax.nn.log_softmax(x, axis=axis)


def leakyrelu(x: jax.Array, a: float = 0.01) -> jax.Array:
    """`max(a*x, x)`, with NNlib's default slope 0.01.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.leakyrelu(jnp.array([-1.0, 1.0]))
        Array([-0.01,  1.  ], dtype=float32)
    """
    return jnp.where(x > 0, x, a * x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """`x` for x > 0, else `alpha * (exp(x) - 1)`.

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.elu(-1.0)), 4)
        -0.6321
    """
    return jax.nn.elu(x, alpha)


def gelu(x: jax.Array) -> jax.Array:
    """GELU, the tanh approximation (NNlib's `gelu`).

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.gelu(1.0)), 4)
        0.8412
    """
    return jax.nn.gelu(x, approximate=True)


def swish(x: jax.Array) -> jax.Array:
    """`x * sigmoid(x)`.

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.swish(1.0)), 4)
        0.7311
    """
    return jax.nn.silu(x)


def softplus(x: jax.Array) -> jax.Array:
    """`log(1 + exp(x))`, computed stably.

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.softplus(0.0)), 4)
        0.6931
    """
    return jax.nn.softplus(x)


def selu(x: jax.Array) -> jax.Array:
    """Scaled ELU with the self-normalising constants.

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.selu(1.0)), 4)
        1.0507
    """
    return jax.nn.selu(x)


def celu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """`max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`.

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.celu(-1.0)), 4)
        -0.6321
    """
    return jax.nn.celu(x, alpha)


def relu6(x: jax.Array) -> jax.Array:
    """`min(max(x, 0), 6)`.

    Example:
        >>> import fluxlike as fl
        >>> float(fl.relu6(7.0))
        6.0
    """
    return jnp.clip(x, 0, 6)


def hardtanh(x: jax.Array) -> jax.Array:
    """`clamp(x, -1, 1)`.

    Example:
        >>> import fluxlike as fl
        >>> float(fl.hardtanh(-3.0))
        -1.0
    """
    return jnp.clip(x, -1, 1)


def hardsigmoid(x: jax.Array) -> jax.Array:
    """NNlib's `hardσ`: `max(0, min(1, (x + 3) / 6))`.

    Example:
        >>> import fluxlike as fl
        >>> float(fl.hardsigmoid(0.0))
        0.5
    """
    return jnp.clip((x + 3) / 6, 0, 1)


def logsigmoid(x: jax.Array) -> jax.Array:
    """`log(sigmoid(x))`, computed stably (NNlib's `logσ`).

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.logsigmoid(0.0)), 4)
        -0.6931
    """
    return jax.nn.log_sigmoid(x)


def mish(x: jax.Array) -> jax.Array:
    """`x * tanh(softplus(x))`.

    Example:
        >>> import fluxlike as fl
        >>> round(float(fl.mish(1.0)), 4)
        0.8651
    """
    return x * jnp.tanh(jax.nn.softplus(x))


def softsign(x: jax.Array) -> jax.Array:
    """`x / (1 + |x|)`.

    Example:
        >>> import fluxlike as fl
        >>> float(fl.softsign(1.0))
        0.5
    """
    return x / (1 + jnp.abs(x))
