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
from .data import DataLoader, onecold, onehot, onehotbatch
from .functor import cpu, destructure, f16, f32, f64, fmap, gpu, params, state
from .gradient import gradient, withgradient
from .saving.checkpoint import loadcheckpoint_, savecheckpoint
from .saving.manager import CheckpointManager
from .saving.model import loadmodel_, savemodel
from .saving.pytorch import loadtorch_, torchstate
from .sharding import FSDP, Replicate, gather, shard, shard_
from .init import (
    glorot_normal, glorot_uniform, identity_init, kaiming_normal, kaiming_uniform, lecun_normal,
    nfan, ones32, orthogonal, rand32, randn32, sparse_init, truncated_normal, zeros32,
)
from .layers import (
    AdaptiveMaxPool, AdaptiveMeanPool, AlphaDropout, BatchNorm, Bilinear, Chain, Conv,
    ConvTranspose, Dense, DepthwiseConv, Dropout, Embedding, flatten, Fn, GlobalMaxPool,
    GlobalMeanPool, GroupNorm, GRU, GRUCell, GRUv3, GRUv3Cell, initialstates, InstanceNorm,
    LayerNorm, LSTM, LSTMCell, make_causal_mask, Maxout, MaxPool, MeanPool, MultiHeadAttention,
    PairwiseFusion, Parallel, PixelShuffle, Recurrence, RNN, RNNCell, SamePad, Scale,
    SkipConnection, Upsample,
)
from ._walk import modules, testmode_, trainmode_
from .module import Module, field, is_training
from .optimise.adjust import adjust, adjust_, freeze, freeze_, learning_rate, thaw, thaw_
from .optimise._as_optax import RuleState
from .optimise.rule import Rule
from .optimise.rules import (
    AdaBelief, AdaDelta, AdaGrad, AdaMax, Adam, AdamW, AMSGrad, Descent, Lion, Momentum, NAdam,
    Nesterov, OAdam, RAdam, RMSProp, Rprop,
)
from .optimise.transforms import (
    AccumGrad, ClipGlobalNorm, ClipGrad, ClipNorm, OptimiserChain, SignDecay, WeightDecay,
)
from .optimise.state import Leaf, OptState, StateView, setup
from .optimise.update import update, update_
from .training import NonFiniteLoss, train, train_, trainstep_

__all__ = [
    "losses", "seed",
    "celu", "elu", "gelu", "gelu_erf", "hardsigmoid", "hardswish", "hardtanh", "identity",
    "leakyrelu", "lisht", "logcosh", "logsigmoid", "logsoftmax", "logsumexp", "mish", "relu",
    "relu6", "rrelu", "selu", "sigmoid", "softmax", "softplus", "softshrink", "softsign", "swish",
    "tanh", "tanhshrink", "trelu",
    "DataLoader", "onecold", "onehot", "onehotbatch",
    "cpu", "destructure", "f16", "f32", "f64", "fmap", "gpu", "params", "state",
    "loadmodel_", "savemodel", "loadcheckpoint_", "savecheckpoint", "CheckpointManager",
    "loadtorch_", "torchstate",
    "FSDP", "Replicate", "gather", "shard", "shard_",
    "gradient", "withgradient",
    "glorot_normal", "glorot_uniform", "identity_init", "kaiming_normal", "kaiming_uniform",
    "lecun_normal", "nfan", "ones32", "orthogonal", "rand32", "randn32", "sparse_init",
    "truncated_normal", "zeros32",
    "Module", "field", "is_training", "modules", "testmode_", "trainmode_",
    "adjust", "adjust_", "freeze", "freeze_", "learning_rate", "thaw", "thaw_",
    "Rule", "RuleState", "AccumGrad", "AdaBelief", "AdaDelta", "AdaGrad", "AdaMax", "Adam", "AdamW", "AMSGrad",
    "ClipGlobalNorm", "ClipGrad", "ClipNorm", "Descent", "Lion", "Momentum", "NAdam", "Nesterov",
    "OAdam", "OptimiserChain", "RAdam", "RMSProp", "Rprop", "SignDecay", "WeightDecay",
    "Leaf", "OptState", "StateView", "setup", "update", "update_",
    "NonFiniteLoss", "train", "train_", "trainstep_",
    "AdaptiveMaxPool", "AdaptiveMeanPool", "AlphaDropout", "BatchNorm", "Bilinear", "Chain", "Conv",
    "ConvTranspose", "Dense", "DepthwiseConv", "Dropout", "Embedding", "flatten", "Fn",
    "GlobalMaxPool", "GlobalMeanPool", "GroupNorm", "GRU", "GRUCell", "GRUv3", "GRUv3Cell",
    "initialstates", "InstanceNorm", "LayerNorm", "LSTM", "LSTMCell", "make_causal_mask", "Maxout",
    "MaxPool", "MeanPool", "MultiHeadAttention", "PairwiseFusion", "Parallel", "PixelShuffle",
    "Recurrence", "RNN", "RNNCell", "SamePad", "Scale", "SkipConnection", "Upsample",
]
