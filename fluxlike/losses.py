"""Loss functions: every loss of Flux.Losses, as pure JAX functions of arrays.

Each loss takes ``(y_hat, y)`` in Flux's order. Arrays are row-major with the
batch on axis 0 and the class scores on the LAST axis, so Flux's ``dims=1``
(its class dimension) is ``axis=-1`` here.

Shared conventions:

* ``agg`` reduces the loss array exactly as Flux's ``agg`` keyword does. The
  default ``jnp.mean`` averages every entry of the per-element losses (``mse``,
  ``binarycrossentropy``, ...) or of the per-sample losses (``crossentropy``,
  ``focal_loss``, ..., which first sum over ``axis``). Any callable works
  (``jnp.sum``, ``lambda l: ...``); ``agg=None`` returns the unreduced array.
  Unlike Flux, the summed ``axis`` is dropped rather than kept with size 1,
  so per-sample losses of a ``(batch, classes)`` input have shape ``(batch,)``.
* ``eps=None`` means ``jnp.finfo(y_hat.dtype).eps`` (Flux's ``epseltype``;
  float32's for integer inputs unless x64 is enabled).
* Shapes are checked as Flux's ``_check_sizes`` does: equal after padding the
  shorter shape with leading ones (Flux pads trailing ones, column-major), and
  a 0-d ``y`` or ``y_hat`` (a constant label) passes. A mismatch raises
  ``ValueError``.
* Each loss's arithmetic is one jit-compiled kernel, so an eager call compiles
  once per shape and dtype; hyperparameters (``delta``, ``eps``, ``gamma``,
  ``margin``, ...) are traced arguments, so changing them never recompiles.
  ``agg`` runs outside the kernel, so any callable works without recompiling.
* ``dice_coeff_loss`` and ``tversky_loss`` reduce the whole array to a scalar
  and take no ``agg``, as in Flux.
"""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "mae",
    "mse",
    "msle",
    "huber_loss",
    "label_smoothing",
    "crossentropy",
    "logitcrossentropy",
    "binarycrossentropy",
    "logitbinarycrossentropy",
    "kldivergence",
    "poisson_loss",
    "hinge_loss",
    "squared_hinge_loss",
    "dice_coeff_loss",
    "tversky_loss",
    "binary_focal_loss",
    "focal_loss",
    "siamese_contrastive_loss",
    "ctc_loss",
]

Agg = Callable[[jax.Array], jax.Array] | None
Axis = int | tuple[int, ...]


# --------------------------------------------------------------------------
# helpers


def _check_agg(name: str, agg: Agg) -> None:
    if agg is not None and not callable(agg):
        raise TypeError(
            f"{name}: agg must be a callable such as jnp.mean or jnp.sum, or None "
            f"for no reduction; got {agg!r}"
        )


def _prepare(name: str, y_hat: ArrayLike, y: ArrayLike, agg: Agg) -> tuple[jax.Array, jax.Array]:
    """Convert to arrays, check ``agg`` and the shapes as Flux's ``_check_sizes``."""
    _check_agg(name, agg)
    y_hat, y = jnp.asarray(y_hat), jnp.asarray(y)
    a, b = y_hat.shape, y.shape
    if a and b:
        n = max(len(a), len(b))
        if (1,) * (n - len(a)) + a != (1,) * (n - len(b)) + b:
            raise ValueError(f"{name}: y_hat has shape {a} but y has shape {b}; they must match")
    return y_hat, y


def _aggregate(agg: Agg, losses: jax.Array) -> jax.Array:
    return losses if agg is None else agg(losses)


def _eps(y_hat: jax.Array, eps: float | None) -> float | jax.Array:
    """Flux's ``epseltype``: the machine epsilon of ``y_hat``'s float type."""
    if eps is not None:
        return eps
    dtype = y_hat.dtype
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    return float(jnp.finfo(dtype).eps)


def _xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x * log(y)``, zero where ``x == 0`` (also at ``y == 0``, with finite gradients)."""
    return x * jnp.log(jnp.where((x == 0) & (y == 0), jnp.ones_like(y), y))


def _abs2(d: jax.Array) -> jax.Array:
    if jnp.iscomplexobj(d):
        return jnp.real(d) ** 2 + jnp.imag(d) ** 2
    return jnp.square(d)


def _concrete(value: float | jax.Array) -> float | None:
    """``value`` as a float, or None when it is traced (then it cannot be checked)."""
    try:
        return float(value)
    except (jax.errors.ConcretizationTypeError, TypeError):
        return None


# --------------------------------------------------------------------------
# regression


@jax.jit
def _mae(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.abs(y_hat - y)


def mae(y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean) -> jax.Array:
    """Mean absolute error, ``agg(abs(y_hat - y))``.

    Args:
      y_hat: predictions.
      y: targets, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> print(fl.losses.mae(jnp.array([1.1, 1.9, 3.1]), jnp.arange(1, 4)))
      0.1
    """
    y_hat, y = _prepare("mae", y_hat, y, agg)
    return _aggregate(agg, _mae(y_hat, y))


@jax.jit
def _mse(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    return _abs2(y_hat - y)


def mse(y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean) -> jax.Array:
    """Mean squared error, ``agg(abs(y_hat - y) ** 2)``.

    Args:
      y_hat: predictions (real or complex).
      y: targets, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> print(fl.losses.mse(jnp.array([1.1, 1.9, 3.1]), jnp.arange(1, 4)))
      0.01
      >>> fl.losses.mse(jnp.array([1.1, 1.9, 3.1]), jnp.arange(1, 4), agg=None).shape
      (3,)
    """
    y_hat, y = _prepare("mse", y_hat, y, agg)
    return _aggregate(agg, _mse(y_hat, y))


@jax.jit
def _msle(y_hat: jax.Array, y: jax.Array, eps: float) -> jax.Array:
    return jnp.log((y_hat + eps) / (y + eps)) ** 2


def msle(
    y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean, eps: float | None = None
) -> jax.Array:
    """Mean squared logarithmic error, ``agg(log((y_hat + eps) / (y + eps)) ** 2)``.

    Penalises under-estimates more than over-estimates.

    Args:
      y_hat: non-negative predictions.
      y: non-negative targets, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.
      eps: stabiliser; ``None`` means the machine epsilon of ``y_hat``'s dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> print(fl.losses.msle(jnp.array([1.1, 2.2, 3.3]), jnp.arange(1, 4)))
      0.0090840
      >>> print(fl.losses.msle(jnp.array([0.9, 1.8, 2.7]), jnp.arange(1, 4)))
      0.0111008
    """
    y_hat, y = _prepare("msle", y_hat, y, agg)
    return _aggregate(agg, _msle(y_hat, y, _eps(y_hat, eps)))


@jax.jit
def _huber_loss(y_hat: jax.Array, y: jax.Array, delta: float) -> jax.Array:
    err = jnp.abs(y_hat - y)
    return jnp.where(err < delta, 0.5 * err * err, delta * (err - 0.5 * delta))


def huber_loss(
    y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean, delta: float = 1.0
) -> jax.Array:
    """Huber loss, ``agg(where(|d| < delta, d**2 / 2, delta * (|d| - delta / 2)))``, d = y_hat - y.

    Args:
      y_hat: predictions.
      y: targets, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.
      delta: the error size where the loss turns from quadratic to linear.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y_hat = jnp.array([1.1, 2.1, 3.1])
      >>> print(fl.losses.huber_loss(y_hat, jnp.arange(1, 4)))  # delta = 1 > |d|
      0.005
      >>> print(fl.losses.huber_loss(y_hat, jnp.arange(1, 4), delta=0.05))  # |d| > delta
      0.00375
    """
    y_hat, y = _prepare("huber_loss", y_hat, y, agg)
    return _aggregate(agg, _huber_loss(y_hat, y, delta))


# --------------------------------------------------------------------------
# classification on probabilities and logits


def label_smoothing(y: ArrayLike, alpha: float, *, axis: int | None = -1) -> jax.Array:
    """Smoothed labels, ``y * (1 - alpha) + alpha / y.shape[axis]`` (``+ alpha / 2`` if binary).

    Args:
      y: one-hot labels with classes on ``axis``, or binary labels in [0, 1].
      alpha: the smoothing factor, strictly between 0 and 1.
      axis: the one-hot axis; ``None`` for binary labels, which are squeezed
        towards 0.5 (Flux's ``dims=0``).

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y = jnp.array([[0, 1], [0, 1], [1, 0]])
      >>> fl.losses.label_smoothing(y, 0.2).tolist()
      [[0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]
      >>> fl.losses.label_smoothing(jnp.array([1.0, 0.0]), 0.2, axis=None).tolist()
      [0.9, 0.1]
    """
    a = _concrete(alpha)
    if a is not None and not 0 < a < 1:
        raise ValueError(f"label_smoothing: alpha must lie strictly between 0 and 1; got {a}")
    y = jnp.asarray(y)
    if axis is None:
        return y * (1 - alpha) + alpha / 2
    return y * (1 - alpha) + alpha / y.shape[axis]


@functools.partial(jax.jit, static_argnames="axis")
def _crossentropy(y_hat: jax.Array, y: jax.Array, axis: Axis, eps: float) -> jax.Array:
    return -jnp.sum(_xlogy(y, y_hat + eps), axis=axis)


def crossentropy(
    y_hat: ArrayLike,
    y: ArrayLike,
    *,
    axis: Axis = -1,
    agg: Agg = jnp.mean,
    eps: float | None = None,
) -> jax.Array:
    """Cross entropy of probabilities, ``agg(-sum(y * log(y_hat + eps), axis))``.

    ``0 * log(0)`` counts as 0.

    Args:
      y_hat: predicted probabilities (summing to one over ``axis``, as after
        a softmax); prefer :func:`logitcrossentropy` on logits.
      y: target probabilities, usually one-hot, the shape of ``y_hat``.
      axis: the class axis (or axes) summed over.
      agg: reduction of the per-sample losses; ``None`` returns them unreduced.
      eps: stabiliser; ``None`` means the machine epsilon of ``y_hat``'s dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y = jax.nn.one_hot(jnp.array([0, 1, 2, 1, 0]), 3)
      >>> y_hat = jax.nn.softmax(jnp.arange(-7.0, 8.0).reshape(5, 3))
      >>> print(fl.losses.crossentropy(y_hat, y))
      1.6076053
      >>> print(fl.losses.crossentropy(y_hat, fl.losses.label_smoothing(y, 0.15)))
      1.5776052
    """
    y_hat, y = _prepare("crossentropy", y_hat, y, agg)
    return _aggregate(agg, _crossentropy(y_hat, y, axis, _eps(y_hat, eps)))


@functools.partial(jax.jit, static_argnames="axis")
def _logitcrossentropy(y_hat: jax.Array, y: jax.Array, axis: Axis) -> jax.Array:
    return -jnp.sum(y * jax.nn.log_softmax(y_hat, axis=axis), axis=axis)


def logitcrossentropy(
    y_hat: ArrayLike, y: ArrayLike, *, axis: Axis = -1, agg: Agg = jnp.mean
) -> jax.Array:
    """Cross entropy of logits, ``agg(-sum(y * log_softmax(y_hat, axis), axis))``.

    Equal to ``crossentropy(softmax(y_hat), y)``, computed stably.

    Args:
      y_hat: unnormalised class scores.
      y: target probabilities, usually one-hot, the shape of ``y_hat``.
      axis: the class axis (or axes).
      agg: reduction of the per-sample losses; ``None`` returns them unreduced.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y = jax.nn.one_hot(jnp.array([0, 1, 2, 0, 1, 0, 0]), 3)
      >>> y_hat = jnp.concatenate([jnp.arange(-9.0, 1), jnp.arange(0.0, 10), jnp.array([7.5])])
      >>> print(fl.losses.logitcrossentropy(y_hat.reshape(7, 3), y))
      1.5791205
    """
    y_hat, y = _prepare("logitcrossentropy", y_hat, y, agg)
    return _aggregate(agg, _logitcrossentropy(y_hat, y, axis))


@jax.jit
def _binarycrossentropy(y_hat: jax.Array, y: jax.Array, eps: float) -> jax.Array:
    return -_xlogy(y, y_hat + eps) - _xlogy(1 - y, 1 - y_hat + eps)


def binarycrossentropy(
    y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean, eps: float | None = None
) -> jax.Array:
    """Binary cross entropy, ``agg(-y * log(y_hat + eps) - (1 - y) * log(1 - y_hat + eps))``.

    ``0 * log(0)`` counts as 0.

    Args:
      y_hat: predicted probabilities (as after a sigmoid); prefer
        :func:`logitbinarycrossentropy` on logits.
      y: target probabilities in [0, 1], the shape of ``y_hat`` or a constant.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.
      eps: stabiliser; ``None`` means the machine epsilon of ``y_hat``'s dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y_hat = jnp.array([0.731059, 0.5, 0.731059])
      >>> print(fl.losses.binarycrossentropy(y_hat, jnp.array([1, 0, 1])))
      0.43989
    """
    y_hat, y = _prepare("binarycrossentropy", y_hat, y, agg)
    return _aggregate(agg, _binarycrossentropy(y_hat, y, _eps(y_hat, eps)))


@jax.jit
def _logitbinarycrossentropy(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    return (1 - y) * y_hat - jax.nn.log_sigmoid(y_hat)


def logitbinarycrossentropy(y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean) -> jax.Array:
    """Binary cross entropy of logits, ``agg((1 - y) * y_hat - log_sigmoid(y_hat))``.

    Equal to ``binarycrossentropy(sigmoid(y_hat), y)``, computed stably.

    Args:
      y_hat: logits.
      y: target probabilities in [0, 1], the shape of ``y_hat`` or a constant.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y_hat = jnp.array([2.0, -1.0, jnp.pi])
      >>> print(fl.losses.logitbinarycrossentropy(y_hat, jnp.array([1, 0, 1])))
      0.160832
    """
    y_hat, y = _prepare("logitbinarycrossentropy", y_hat, y, agg)
    return _aggregate(agg, _logitbinarycrossentropy(y_hat, y))


@functools.partial(jax.jit, static_argnames="axis")
def _negentropy(y: jax.Array, axis: Axis) -> jax.Array:
    return jnp.sum(_xlogy(y, y), axis=axis)


def kldivergence(
    y_hat: ArrayLike,
    y: ArrayLike,
    *,
    axis: Axis = -1,
    agg: Agg = jnp.mean,
    eps: float | None = None,
) -> jax.Array:
    """Kullback-Leibler divergence, ``agg(sum(y * log(y), axis)) + crossentropy(y_hat, y)``.

    The two terms are aggregated separately, as in Flux; ``0 * log(0)`` counts as 0.

    Args:
      y_hat: predicted probabilities, summing to one over ``axis``.
      y: target probabilities, the shape of ``y_hat``.
      axis: the class axis (or axes).
      agg: reduction of the per-sample terms; ``None`` returns the per-sample
        divergences.
      eps: stabiliser of the cross entropy; ``None`` means the machine epsilon
        of ``y_hat``'s dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> p1, p2 = jnp.eye(2), jnp.full((2, 2), 0.5)
      >>> print(fl.losses.kldivergence(p2, p1))  # log(2)
      0.6931...
      >>> print(fl.losses.kldivergence(p1, p2, eps=0))
      inf
    """
    y_hat, y = _prepare("kldivergence", y_hat, y, agg)
    y = jnp.broadcast_to(y, jnp.broadcast_shapes(y.shape, y_hat.shape))  # a constant label
    negentropy = _aggregate(agg, _negentropy(y, axis))
    return negentropy + _aggregate(agg, _crossentropy(y_hat, y, axis, _eps(y_hat, eps)))


@jax.jit
def _poisson_loss(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    return y_hat - _xlogy(y, y_hat)


def poisson_loss(y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean) -> jax.Array:
    """Poisson negative log-likelihood up to a constant, ``agg(y_hat - y * log(y_hat))``.

    ``0 * log(0)`` counts as 0.

    Args:
      y_hat: predicted (positive) rates.
      y: observed counts, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> print(fl.losses.poisson_loss(jnp.array([1.0, 3.0, 3.0]), jnp.arange(1, 4)))
      0.5023129
    """
    y_hat, y = _prepare("poisson_loss", y_hat, y, agg)
    return _aggregate(agg, _poisson_loss(y_hat, y))


@jax.jit
def _hinge_loss(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.maximum(0, 1 - y_hat * y)


def hinge_loss(y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean) -> jax.Array:
    """Hinge loss, ``agg(max(0, 1 - y_hat * y))``.

    Args:
      y_hat: predicted scores.
      y: labels in {-1, 1}, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y_hat, y = jnp.array([0.1, 0.3, 1.0, 1.5]), jnp.array([1, -1, 1, 1])
      >>> print(fl.losses.hinge_loss(y_hat, y))
      0.55
    """
    y_hat, y = _prepare("hinge_loss", y_hat, y, agg)
    return _aggregate(agg, _hinge_loss(y_hat, y))


@jax.jit
def _squared_hinge_loss(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.maximum(0, 1 - y_hat * y) ** 2


def squared_hinge_loss(y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean) -> jax.Array:
    """Squared hinge loss, ``agg(max(0, 1 - y_hat * y) ** 2)``.

    Args:
      y_hat: predicted scores.
      y: labels in {-1, 1}, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y_hat, y = jnp.array([0.1, 0.3, 1.0, 1.5]), jnp.array([1, -1, 1, 1])
      >>> print(fl.losses.squared_hinge_loss(y_hat, y))
      0.625
    """
    y_hat, y = _prepare("squared_hinge_loss", y_hat, y, agg)
    return _aggregate(agg, _squared_hinge_loss(y_hat, y))


# --------------------------------------------------------------------------
# segmentation (whole-array losses: no agg, as in Flux)


@jax.jit
def _dice_coeff_loss(y_hat: jax.Array, y: jax.Array, smooth: float) -> jax.Array:
    num = 2 * jnp.sum(y * y_hat) + smooth
    return 1 - num / (jnp.sum(y**2) + jnp.sum(y_hat**2) + smooth)


def dice_coeff_loss(y_hat: ArrayLike, y: ArrayLike, *, smooth: float = 1.0) -> jax.Array:
    """Dice loss, ``1 - (2 sum(y * y_hat) + smooth) / (sum(y**2) + sum(y_hat**2) + smooth)``.

    Args:
      y_hat: predicted masks or probabilities.
      y: target masks, the shape of ``y_hat``.
      smooth: added to numerator and denominator.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> print(fl.losses.dice_coeff_loss(jnp.array([1.1, 2.1, 3.1]), jnp.arange(1, 4)))
      0.00099
    """
    y_hat, y = _prepare("dice_coeff_loss", y_hat, y, None)
    return _dice_coeff_loss(y_hat, y, smooth)


@jax.jit
def _tversky_loss(y_hat: jax.Array, y: jax.Array, beta: float) -> jax.Array:
    tp = jnp.sum(y * y_hat)
    fp = jnp.sum((1 - y) * y_hat)
    fn = jnp.sum(y * (1 - y_hat))
    return 1 - (tp + 1) / (tp + beta * fp + (1 - beta) * fn + 1)


def tversky_loss(y_hat: ArrayLike, y: ArrayLike, *, beta: float = 0.7) -> jax.Array:
    """Tversky loss over the whole array, ``1 - (TP + 1) / (TP + beta * FP + (1 - beta) * FN + 1)``.

    Here ``TP = sum(y * y_hat)``, ``FP = sum((1 - y) * y_hat)`` and
    ``FN = sum(y * (1 - y_hat))``. This is Flux.jl's code and the values its
    test suite publishes (``tversky_loss([0, 1.4, 0.5, 1.2], [1, 0.5, 0.3, 2.4])
    ≈ -0.06772``): ``beta`` weighs the false positives. Flux's docstring, and
    the paper (arXiv:1706.05721), put ``beta`` on the false negatives instead;
    their ``beta = b`` is ``beta = 1 - b`` here.

    Args:
      y_hat: predicted masks or probabilities.
      y: target masks, the shape of ``y_hat``.
      beta: the weight of false positives; ``1 - beta`` weighs false negatives.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y = jnp.array([1.0, 1.0, 0.0, 0.0])
      >>> print(fl.losses.tversky_loss(jnp.array([1.0, 0.0, 0.0, 0.0]), y))  # a false negative
      0.1304348
      >>> print(fl.losses.tversky_loss(jnp.array([1.0, 1.0, 1.0, 0.0]), y))  # a false positive
      0.1891892
    """
    y_hat, y = _prepare("tversky_loss", y_hat, y, None)
    return _tversky_loss(y_hat, y, beta)


# --------------------------------------------------------------------------
# focal and contrastive


@jax.jit
def _binary_focal_loss(y_hat: jax.Array, y: jax.Array, gamma: float, eps: float) -> jax.Array:
    y_hat_eps = y_hat + eps
    p_t = y * y_hat_eps + (1 - y) * (1 - y_hat_eps)
    return -((1 - p_t) ** gamma) * jnp.log(p_t)


def binary_focal_loss(
    y_hat: ArrayLike,
    y: ArrayLike,
    *,
    agg: Agg = jnp.mean,
    gamma: float = 2,
    eps: float | None = None,
) -> jax.Array:
    """Binary focal loss, ``agg(-(1 - p_t) ** gamma * log(p_t))``.

    Here ``p_t = y * (y_hat + eps) + (1 - y) * (1 - y_hat - eps)``.

    With ``gamma=0`` it is :func:`binarycrossentropy` (up to where ``eps`` goes).

    Args:
      y_hat: predicted probabilities.
      y: binary targets, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.
      gamma: the focusing exponent, down-weighting well-classified entries.
      eps: stabiliser; ``None`` means the machine epsilon of ``y_hat``'s dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y = jnp.array([[0, 1], [1, 0], [0, 1]])
      >>> y_hat = jnp.array([[0.268941, 0.731059], [0.5, 0.5], [0.268941, 0.731059]])
      >>> print(fl.losses.binary_focal_loss(y_hat, y))
      0.0728675...
    """
    y_hat, y = _prepare("binary_focal_loss", y_hat, y, agg)
    return _aggregate(agg, _binary_focal_loss(y_hat, y, gamma, _eps(y_hat, eps)))


@functools.partial(jax.jit, static_argnames="axis")
def _focal_loss(y_hat: jax.Array, y: jax.Array, axis: Axis, gamma: float, eps: float) -> jax.Array:
    y_hat_eps = y_hat + eps
    return jnp.sum(-y * (1 - y_hat_eps) ** gamma * jnp.log(y_hat_eps), axis=axis)


def focal_loss(
    y_hat: ArrayLike,
    y: ArrayLike,
    *,
    axis: Axis = -1,
    agg: Agg = jnp.mean,
    gamma: float = 2,
    eps: float | None = None,
) -> jax.Array:
    """Focal loss, ``agg(sum(-y * (1 - y_hat - eps) ** gamma * log(y_hat + eps), axis))``.

    With ``gamma=0`` it is :func:`crossentropy`.

    Args:
      y_hat: predicted probabilities, summing to one over ``axis``.
      y: one-hot targets, the shape of ``y_hat``.
      axis: the class axis (or axes).
      agg: reduction of the per-sample losses; ``None`` returns them unreduced.
      gamma: the focusing exponent, down-weighting well-classified samples.
      eps: stabiliser; ``None`` means the machine epsilon of ``y_hat``'s dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y = jax.nn.one_hot(jnp.array([0, 1, 2, 1, 0]), 3)
      >>> y_hat = jax.nn.softmax(jnp.arange(-7.0, 8.0).reshape(5, 3))
      >>> print(fl.losses.focal_loss(y_hat, y))
      1.12776
    """
    y_hat, y = _prepare("focal_loss", y_hat, y, agg)
    return _aggregate(agg, _focal_loss(y_hat, y, axis, gamma, _eps(y_hat, eps)))


@jax.jit
def _siamese_contrastive_loss(y_hat: jax.Array, y: jax.Array, margin: float) -> jax.Array:
    return (1 - y) * y_hat**2 + y * jnp.maximum(0, margin - y_hat) ** 2


def siamese_contrastive_loss(
    y_hat: ArrayLike, y: ArrayLike, *, agg: Agg = jnp.mean, margin: float = 1.0
) -> jax.Array:
    """Contrastive loss of distances, ``agg((1 - y) * y_hat**2 + y * max(0, margin - y_hat) ** 2)``.

    Args:
      y_hat: predicted distances between the two inputs of each pair.
      y: 1 for a dissimilar pair, 0 for a similar one, the shape of ``y_hat``.
      agg: reduction of the elementwise losses; ``None`` returns them unreduced.
      margin: the distance beyond which dissimilar pairs cost nothing; >= 0.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y_hat = jnp.array([0.5, 1.5, 2.5])
      >>> print(fl.losses.siamese_contrastive_loss(y_hat, jnp.arange(1, 4)))
      -4.8333335
      >>> print(fl.losses.siamese_contrastive_loss(y_hat, jnp.arange(1, 4), margin=2))
      -4.0
    """
    y_hat, y = _prepare("siamese_contrastive_loss", y_hat, y, agg)
    m = _concrete(margin)
    if m is not None and m < 0:
        raise ValueError(f"siamese_contrastive_loss: margin must be non-negative; got {margin}")
    return _aggregate(agg, _siamese_contrastive_loss(y_hat, y, margin))


# --------------------------------------------------------------------------
# connectionist temporal classification


def _logsumexp(*xs: jax.Array) -> jax.Array:
    """Elementwise ``log(sum(exp(xs)))``; where all are ``-inf``: ``-inf``, with zero gradient."""
    stacked = jnp.stack(xs)
    top = jnp.max(stacked, axis=0)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0))
    total = jnp.sum(jnp.exp(stacked - top), axis=0)
    positive = total > 0
    return jnp.where(positive, top + jnp.log(jnp.where(positive, total, 1)), -jnp.inf)


def _ctc_nll(logp: jax.Array, labels: jax.Array, length: jax.Array, blank: int) -> jax.Array:
    """CTC negative log-likelihood of one sequence (Graves 2006, eq. 7.9), by a scan over time.

    ``logp`` is (time, classes) log-probabilities; ``labels`` is padded and its
    first ``length`` entries are the target.
    """
    n_states = 2 * labels.shape[0] + 1
    ext = jnp.full((n_states,), blank, labels.dtype).at[1::2].set(labels)
    before = jnp.concatenate([jnp.full((2,), blank, labels.dtype), ext])[:n_states]
    may_skip = (ext != blank) & (ext != before) & (jnp.arange(n_states) >= 2)
    emit = logp[:, ext]  # (time, states)
    neg_inf = jnp.full((n_states,), -jnp.inf, logp.dtype)
    alpha = neg_inf.at[:2].set(emit[0, :2])

    def step(alpha: jax.Array, emit_t: jax.Array) -> tuple[jax.Array, None]:
        from_prev = jnp.concatenate([neg_inf[:1], alpha[:-1]])
        from_skip = jnp.where(may_skip, jnp.concatenate([neg_inf[:2], alpha[:-2]]), -jnp.inf)
        return _logsumexp(alpha, from_prev, from_skip) + emit_t, None

    alpha, _ = jax.lax.scan(step, alpha, emit[1:])
    last = alpha[2 * length]
    second_last = jnp.where(length > 0, alpha[jnp.maximum(2 * length - 1, 0)], -jnp.inf)
    return -_logsumexp(last, second_last)


@functools.partial(jax.jit, static_argnames="blank")
def _ctc_batch(y_hat: jax.Array, labels: jax.Array, lengths: jax.Array, blank: int) -> jax.Array:
    """Per-sequence CTC losses of (batch, time, classes) scores, padded (batch, length) labels."""
    logp = jax.nn.log_softmax(y_hat.astype(jnp.promote_types(y_hat.dtype, jnp.float32)), axis=-1)
    nll = jax.vmap(_ctc_nll, in_axes=(0, 0, 0, None))
    return nll(logp, labels.astype(jnp.int32), lengths, blank)


def _ctc_labels(y: object, batch: int, blank: int) -> tuple[jax.Array, jax.Array]:
    """Pad ``batch`` label sequences with ``blank``; return (labels, lengths)."""
    if getattr(y, "ndim", None) == 2:  # a (batch, length) array: all of one length
        labels = jnp.asarray(y)
        lengths = jnp.full((labels.shape[0],), labels.shape[1], jnp.int32)
    else:
        seqs = [np.asarray(s).reshape(-1) for s in y]
        seqs = [s.astype(np.int32) if s.size == 0 else s for s in seqs]
        longest = max((len(s) for s in seqs), default=0)
        padded = [np.pad(s, (0, longest - len(s)), constant_values=blank) for s in seqs]
        labels = jnp.asarray(np.stack(padded) if padded else np.zeros((0, 0), np.int32))
        lengths = jnp.asarray([len(s) for s in seqs], dtype=jnp.int32)
    if labels.shape[0] != batch:
        raise ValueError(
            f"ctc_loss: y_hat holds {batch} sequences but y has {labels.shape[0]} label sequences"
        )
    return labels, lengths


def _check_ctc_labels(labels: jax.Array, lengths: jax.Array, n_classes: int, blank: int) -> None:
    """Reject non-integer, out-of-range or blank labels (when the labels are concrete)."""
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"ctc_loss: labels must be integers; got dtype {labels.dtype}")
    try:
        values, lens = np.asarray(labels), np.asarray(lengths)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return
    used = np.arange(values.shape[1]) < lens[:, None]
    bad = used & ((values < 0) | (values >= n_classes) | (values == blank))
    if bad.any():
        raise ValueError(
            f"ctc_loss: label {int(values[bad][0])} is not a class index in [0, {n_classes}) "
            f"other than the blank {blank}"
        )


def ctc_loss(
    y_hat: ArrayLike,
    y: ArrayLike | Sequence[ArrayLike],
    *,
    blank: int = -1,
    agg: Agg = jnp.mean,
) -> jax.Array:
    """Connectionist temporal classification loss, ``agg(-log p(y | y_hat))``, over all alignments.

    ``y_hat`` holds unnormalised class scores (``log_softmax`` is applied
    over the last axis). Flux's ``ctc_loss`` takes (classes, time) with the
    blank as the last class; here time comes first, the class axis is last,
    labels are 0-based and ``blank=-1`` also means the last class. Every
    sequence in a batch uses all ``time`` steps of ``y_hat``.

    Args:
      y_hat: scores of shape (time, classes), or (batch, time, classes).
      y: for one sequence, a 1-D sequence of int labels; for a batch, a
        list of such sequences (lengths may differ) or a (batch, length)
        int array. Labels must be classes other than ``blank``.
      blank: index of the blank class; negative indices count from the end.
      agg: reduction of the per-sequence losses (a scalar for one sequence);
        ``None`` returns them unreduced. Note that ``jnp.mean`` is a plain
        mean over sequences, unlike PyTorch's ``reduction="mean"``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import fluxlike as fl
      >>> y_hat = jnp.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [3.0, 1.0, 2.0]])
      >>> print(fl.losses.ctc_loss(y_hat, [0, 1]))  # blank is class 2
      3.6990738
      >>> print(fl.losses.ctc_loss(jnp.stack([y_hat, y_hat]), [[0, 1], [1]], agg=None))
      [3.6990738 2.2338948]
    """
    _check_agg("ctc_loss", agg)
    y_hat = jnp.asarray(y_hat)
    if y_hat.ndim not in (2, 3):
        raise ValueError(
            f"ctc_loss: y_hat must have shape (time, classes) or (batch, time, classes); "
            f"got shape {y_hat.shape}"
        )
    n_time, n_classes = y_hat.shape[-2:]
    if n_time == 0:
        raise ValueError(f"ctc_loss: y_hat has no time steps (shape {y_hat.shape})")
    if not -n_classes <= blank < n_classes:
        raise ValueError(f"ctc_loss: blank={blank} is not a class index for {n_classes} classes")
    blank = blank % n_classes
    if y_hat.ndim == 2:
        labels = jnp.asarray(y)
        if labels.ndim != 1:
            raise ValueError(
                f"ctc_loss: y must be a 1-D label sequence for 2-D y_hat; got shape {labels.shape}"
            )
        labels = labels.astype(jnp.int32) if labels.size == 0 else labels  # [] is float
        lengths = jnp.full((1,), labels.shape[0], jnp.int32)
        _check_ctc_labels(labels[None], lengths, n_classes, blank)
        per_sequence = _ctc_batch(y_hat[None], labels[None], lengths, blank)[0]
    else:
        labels, lengths = _ctc_labels(y, y_hat.shape[0], blank)
        _check_ctc_labels(labels, lengths, n_classes, blank)
        per_sequence = _ctc_batch(y_hat, labels, lengths, blank)
    return _aggregate(agg, per_sequence)
