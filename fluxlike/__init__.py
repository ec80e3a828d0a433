"""fluxlike: Flux.jl's explicit-gradient training API on JAX.

    import fluxlike as fl
    model = fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10))
    opt_state = fl.setup(fl.Adam(), model)
    fl.train_(lambda m, x, y: fl.losses.mse(m(x), y), model, data, opt_state)
"""

from . import losses
from ._keys import seed
from .activations import (
    celu, elu, gelu, gelu_erf, hardsigmoid, hardswish, hardtanh, identity, leakyrelu, lisht,
    logcosh, logsigmoid, logsoftmax, logsumexp, mish, relu, relu6, rrelu, selu, sigmoid, softmax,
    softplus, softshrink, softsign, swish, tanh, tanhshrink, trelu,
)
from .data import DataLoader, onecold, onehotbatch
from .functor import cpu, destructure, f16, f32, f64, fmap, gpu, loadmodel_, params, state
from .gradient import gradient, withgradient
from .init import (
    glorot_normal, glorot_uniform, identity_init, kaiming_normal, kaiming_uniform, lecun_normal,
    nfan, ones32, orthogonal, rand32, randn32, sparse_init, truncated_normal, zeros32,
)
from .layers import *  # noqa: F403  (each layer file's __all__)
from .layers import __all__ as _layer_names
from ._walk import modules, testmode_, trainmode_
from .module import Module, field, is_training
from .optimise.adjust import adjust, adjust_, freeze, freeze_, learning_rate, thaw, thaw_
from .optimise.rule import Rule
from .optimise.rules import (
    AdaBelief, AdaDelta, AdaGrad, AdaMax, Adam, AdamW, AMSGrad, Descent, Lion, Momentum, NAdam,
    Nesterov, OAdam, RAdam, RMSProp, Rprop,
)
from .optimise.transforms import (
    AccumGrad, ClipGlobalNorm, ClipGrad, ClipNorm, OptimiserChain, SignDecay, WeightDecay,
)
from .optimise.state import Leaf, OptState, setup, update, update_
from .training import train, train_, trainstep_

__all__ = [
    "losses", "seed",
    "celu", "elu", "gelu", "gelu_erf", "hardsigmoid", "hardswish", "hardtanh", "identity",
    "leakyrelu", "lisht", "logcosh", "logsigmoid", "logsoftmax", "logsumexp", "mish", "relu",
    "relu6", "rrelu", "selu", "sigmoid", "softmax", "softplus", "softshrink", "softsign", "swish",
    "tanh", "tanhshrink", "trelu",
    "DataLoader", "onecold", "onehotbatch",
    "cpu", "destructure", "f16", "f32", "f64", "fmap", "gpu", "loadmodel_", "params", "state",
    "gradient", "withgradient",
    "glorot_normal", "glorot_uniform", "identity_init", "kaiming_normal", "kaiming_uniform",
    "lecun_normal", "nfan", "ones32", "orthogonal", "rand32", "randn32", "sparse_init",
    "truncated_normal", "zeros32",
    "Module", "field", "is_training", "modules", "testmode_", "trainmode_",
    "adjust", "adjust_", "freeze", "freeze_", "learning_rate", "thaw", "thaw_",
    "Rule", "AccumGrad", "AdaBelief", "AdaDelta", "AdaGrad", "AdaMax", "Adam", "AdamW", "AMSGrad",
    "ClipGlobalNorm", "ClipGrad", "ClipNorm", "Descent", "Lion", "Momentum", "NAdam", "Nesterov",
    "OAdam", "OptimiserChain", "RAdam", "RMSProp", "Rprop", "SignDecay", "WeightDecay",
    "Leaf", "OptState", "setup", "update", "update_",
    "train", "train_", "trainstep_",
    *_layer_names,
]
