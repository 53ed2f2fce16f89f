"""The one registry of reusable blocks: encoders, tokenisers, transformers, context layers.

:data:`BLOCKS` maps a *kind* to the registry of that kind's blocks (both are
:class:`~emodistill._registry.Registry` objects, the package's one registry
mechanism). Each kind has one calling convention; the module defining a block
registers it under its kind, and methods build blocks through :func:`build_block`
(or the kind's own helper, e.g. :func:`~emodistill.models.encoders.build_encoder`
for ``auto``), never by a second list of names.

=================  ==================================================================
kind               blocks and their convention
=================  ==================================================================
``encoder``        ``(dim, seq_len, *, width, layers, dropout, ...)``: per-modality
                   sequence encoder ``[B, T, D] + mask [B, T] -> [B, H]``
                   (``mlp``, ``conv``, ``transformer``, ``minilm``; :mod:`.encoders`,
                   :mod:`.text_encoder`); ``method.encoder`` names one
``tokenizer``      ``(dim, seq_len, *, width, dropout, ...)``: signal → tokens
                   ``[B, N, W]`` + token mask (``conv``, ``linear``, ``vector``;
                   :mod:`.physio`); ``method.tokenizer`` names one
``transformer``    ``(dim, heads, layers, ...)``: a stack of attention blocks on
                   ``[B, T, D]`` sequences (``mult``: MulT's self-/cross-modal stack,
                   :mod:`._mult`, DMD and DHMD)
``context``        ``(dim, **params)``: utterance-context layer ``[B, U, H] -> [B, U, H]``
                   (``birnn``, ``attention``; :mod:`.context`); ``method.context``
                   names one
=================  ==================================================================

The kind registries are created here, empty, so that this module imports no
block; importing :mod:`emodistill.models` imports every module and fills them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from emodistill._registry import Registry

__all__ = ["BLOCKS", "ENCODERS", "TOKENIZERS", "TRANSFORMERS", "CONTEXT_LAYERS", "build_block",
           "BlockFactory"]

#: anything that builds an ``nn.Module`` (usually the block's class)
BlockFactory = Callable[..., nn.Module]

#: kind → the registry of that kind's blocks
BLOCKS: Registry[Registry[BlockFactory]] = Registry("block kind")

#: per-modality sequence encoders ``[B, T, D] + mask -> [B, H]``
ENCODERS: Registry[BlockFactory] = BLOCKS.register("encoder")(Registry("encoder"))
#: signal tokenisers ``[B, T, D] + mask -> ([B, N, W], [B, N])``
TOKENIZERS: Registry[BlockFactory] = BLOCKS.register("tokenizer")(Registry("tokenizer"))
#: attention stacks on ``[B, T, D]`` sequences
TRANSFORMERS: Registry[BlockFactory] = BLOCKS.register("transformer")(Registry("transformer"))
#: utterance-context layers ``[B, U, H] -> [B, U, H]``
CONTEXT_LAYERS: Registry[BlockFactory] = BLOCKS.register("context")(Registry("context layer"))


def build_block(kind: str, name: str, /, *args: Any, **kwargs: Any) -> nn.Module:
    """Build block ``name`` of ``kind`` with the kind's calling convention.

    Parameters
    ----------
    kind : str
        A :data:`BLOCKS` kind (``encoder``, ``tokenizer``, ``transformer``, ``context``).
    name : str
        A block registered under that kind.
    *args, **kwargs
        Passed to the block's factory.

    Returns
    -------
    nn.Module
        The new block.

    Raises
    ------
    UnknownNameError
        If the kind or the name is unknown (the message lists the valid ones).
    """
    return BLOCKS.get(kind).get(name)(*args, **kwargs)
