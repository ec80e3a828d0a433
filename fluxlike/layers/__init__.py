"""Layers: one file per family. Each file declares its public names in
`__all__`; `fluxlike/__init__.py` re-exports them."""

from .attention import *  # noqa: F403
from .basic import *  # noqa: F403
from .combinators import *  # noqa: F403
from .conv import *  # noqa: F403
from .dense import *  # noqa: F403
from .dropout import *  # noqa: F403
from .norm import *  # noqa: F403
from .pool import *  # noqa: F403
from .recurrent import *  # noqa: F403
from . import attention, basic, combinators, conv, dense, dropout, norm, pool, recurrent

__all__ = [
    name
    for mod in (attention, basic, combinators, conv, dense, dropout, norm, pool, recurrent)
    for name in mod.__all__
]
