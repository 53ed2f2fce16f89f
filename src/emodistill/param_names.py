"""One vocabulary of size parameters, and the table that maps the former names to it.

Every method names its sizes with the same words (documented in
``docs/methods/README.md``):

``width``
    the method's working feature width (an encoder's output, a token, DMD's ``d``);
``layers``
    the number of blocks of its main stack (encoder layers, transformer blocks);
``heads``
    attention heads;
``<part>_width`` / ``<part>_layers``
    the width or depth of one named part (``head_width``, ``ff_width``,
    ``attention_width``, ``homo_gd_width``, ``dict_width``; ``mem_layers``,
    ``cross_layers``);
counts by what they count
    ``dict_atoms``, ``vector_tokens``; ``kernel_size`` for every kernel.

:data:`SIZE_ALIASES` is the one table of the former names. A former name keeps
working where users meet it: in an override or a user config file
(``method.hidden=8`` is applied as ``method.width=8`` with a one-line
deprecation warning, see :func:`emodistill.config.compose`) and in the config
stored by an older checkpoint (mapped silently by
:func:`emodistill.models.build_method`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emodistill.errors import ConfigError

__all__ = ["SIZE_ALIASES", "rename_section", "rename_method_params", "new_key"]

#: former name -> name in the vocabulary (keys of a method section or of its
#: ``context_params``; nested method sections such as a KD student included)
SIZE_ALIASES: dict[str, str] = {
    "hidden": "width",               # unimodal, *_fusion, hkd_mer, context layers
    "d_model": "width",              # dmd, dhmd
    "encoder_layers": "layers",      # unimodal, *_fusion, hkd_mer
    "depth": "layers",               # physio_student, physio_teacher
    "num_heads": "heads",            # dmd, dhmd
    "ff": "ff_width",                # physio_*
    "head_hidden": "head_width",     # physio_*, eeg_graph
    "attention_hidden": "attention_width",  # hkd_mer
    "homo_gd_size": "homo_gd_width",        # dmd, dhmd
    "hetero_gd_size": "hetero_gd_width",    # dmd, dhmd
    "dict_dim": "dict_width",        # dhmd
    "dict_size": "dict_atoms",       # dhmd
    "conv_kernel": "kernel_size",    # dmd, dhmd
}


def new_key(path: str) -> str | None:
    """Return ``path`` with a former size name as its last part renamed, else None.

    Only keys inside the ``method`` section are renamed (``method.hidden``,
    ``method.student.depth``, ``method.context_params.hidden``).

    Parameters
    ----------
    path : str
        A dotted config key (``+`` prefix already removed).

    Returns
    -------
    str or None
        The key under its new name, or None when the key is not a former name.
    """
    parts = path.split(".")
    if len(parts) < 2 or parts[0] != "method" or parts[-1] not in SIZE_ALIASES:
        return None
    return ".".join([*parts[:-1], SIZE_ALIASES[parts[-1]]])


def rename_section(section: Mapping[str, Any], where: str = "method") -> tuple[dict[str, Any],
                                                                            list[str]]:
    """Rename the former size names of one method section (recursively, nested ones too).

    Nested method sections are the mappings that carry a ``name`` (a KD
    ``student``, a ``teacher.method``) and ``context_params``; other mappings
    (``loss_weights``, per-modality values) are left as they are.

    Parameters
    ----------
    section : mapping
        A method section as plain data.
    where : str
        Its dotted path, for messages.

    Returns
    -------
    dict
        A copy with the new names (key order kept, a renamed key in its old place).
    list of str
        ``"old -> new"`` for every key renamed, with full dotted paths.

    Raises
    ------
    ConfigError
        If a section sets a former name and its new name to different values.
    """
    out: dict[str, Any] = {}
    renamed: list[str] = []
    for k, v in section.items():
        key = SIZE_ALIASES.get(k, k) if isinstance(k, str) else k
        if key != k:
            if key in section and section[key] != v:
                raise ConfigError(
                    f"{where}.{k}={v!r} and {where}.{key}={section[key]!r}: {k!r} is the former "
                    f"name of {key!r}; set only {where}.{key}"
                )
            renamed.append(f"{where}.{k} -> {where}.{key}")
            if key in section:
                continue
        if isinstance(v, Mapping) and ("name" in v or k in ("context_params", "teacher")
                                       or (k == "method" and where.endswith("teacher"))):
            v, sub = rename_section(v, f"{where}.{k}")
            renamed += sub
        out[key] = v
    return out, renamed


def rename_method_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return method hyper-parameters with every former size name replaced (no warning).

    Used where old names cannot be corrected by the user: the parameters stored
    in an older checkpoint (see :data:`SIZE_ALIASES`).
    """
    return rename_section(params)[0]
