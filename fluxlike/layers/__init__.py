"""Layers: one file per family, each declaring its public names in `__all__`.
`fluxlike/__init__.py` re-exports the names listed here."""

from ._common import SamePad
from .attention import MultiHeadAttention, make_causal_mask
from .combinators import Chain, Fn, Maxout, PairwiseFusion, Parallel, SkipConnection
from .conv import Conv, ConvTranspose, DepthwiseConv
from .dense import Bilinear, Dense, Scale
from .dropout import AlphaDropout, Dropout
from .embedding import Embedding
from .norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm
from .pool import (
    AdaptiveMaxPool, AdaptiveMeanPool, GlobalMaxPool, GlobalMeanPool, MaxPool, MeanPool, flatten,
)
from .recurrent import (
    GRU, LSTM, RNN, GRUCell, GRUv3, GRUv3Cell, LSTMCell, Recurrence, RNNCell, initialstates,
)
from .upsample import PixelShuffle, Upsample

__all__ = [
    "MultiHeadAttention", "make_causal_mask",
    "Chain", "Fn", "Parallel", "SkipConnection", "PairwiseFusion", "Maxout",
    "SamePad", "Conv", "ConvTranspose", "DepthwiseConv",
    "Dense", "Bilinear", "Scale",
    "Dropout", "AlphaDropout",
    "Embedding",
    "BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm",
    "MaxPool", "MeanPool", "GlobalMaxPool", "GlobalMeanPool", "AdaptiveMaxPool", "AdaptiveMeanPool", "flatten",
    "RNNCell", "LSTMCell", "GRUCell", "GRUv3Cell", "RNN", "LSTM", "GRU", "GRUv3", "Recurrence", "initialstates",
    "Upsample", "PixelShuffle",
]
