"""The generic npz format for users' own data.

One ``.npz`` file (written with :func:`numpy.savez`, loaded with
``allow_pickle=False``) holding:

=========================  ================  ============================================
array                      shape / dtype     meaning
=========================  ================  ============================================
``modalities``             [M] str           modality names, in order
``<modality>``             [N, T, D] float   features (``[N, D]`` means T = 1)
``<modality>_lengths``     [N] int           optional true lengths (right padding)
``<modality>_present``     [N] bool          optional presence mask (missing modalities)
``target_<name>``          [N]               float → regression, int → class index
``classes_<name>``         [C] str           class names of a class target (required)
``range_<name>``           [2] float         optional valid range of a regression target
``id``                     [N] str           sample ids
``group_<key>``            [N]               optional groups (video, speaker, subject...)
``split_<name>``           [N] str           optional predefined split: train/valid/test/""
=========================  ================  ============================================

:func:`save_npz` writes this format from a :class:`MultimodalDataset`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from emodistill.data._io import refuse_wrong_kind, require_file
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.registry import DATASETS
from emodistill.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from emodistill.errors import ConfigError, DataFormatError

__all__ = ["load_npz", "save_npz", "read_npz_arrays"]


_NPZ_HINT = "write it with numpy.savez or emodistill.data.formats.npz.save_npz"


def read_npz_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file without pickle, with errors naming what it is.

    Parameters
    ----------
    path : path
        An existing file.

    Returns
    -------
    dict of str to np.ndarray
        Array name → array, in file order.

    Raises
    ------
    DataFormatError
        The file is empty, text, gzip, a single ``.npy`` array, a zip without
        ``.npy`` members, truncated, or holds object arrays.
    """
    p = Path(path)
    kind = refuse_wrong_kind(p, expected="an .npz archive", accept=("zip", "npy"),
                             hint=_NPZ_HINT)
    if kind == "npy":
        raise DataFormatError(f"{p}: holds a single array (.npy), not an .npz archive; "
                              f"{_NPZ_HINT}")
    try:
        with np.load(p, allow_pickle=False) as archive:
            other = [n for n in archive.zip.namelist() if not n.endswith(".npy")]
            if other:
                what = ("a zip archive without .npy arrays" if len(other) == len(archive.files)
                        else "an .npz archive with members that are not .npy arrays")
                raise DataFormatError(f"{p}: {what} ({other[:5]}); {_NPZ_HINT}")
            if not archive.files:
                raise DataFormatError(f"{p}: an empty zip archive, not an .npz; {_NPZ_HINT}")
            return {k: archive[k] for k in archive.files}
    except DataFormatError:
        raise
    except ValueError as e:
        raise DataFormatError(
            f"{p}: cannot read without pickle ({e}); store strings as fixed-width unicode "
            "arrays (np.array([...], dtype=str)), not object arrays"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:  # truncated zip
        raise DataFormatError(
            f"{p}: not a readable .npz archive, truncated or damaged ({type(e).__name__}: "
            f"{e}); {_NPZ_HINT}"
        ) from None


def load_npz(path: str | Path | None, *, name: str | None = None) -> MultimodalDataset:
    """Load a dataset in the generic npz format (see the module docstring).

    Parameters
    ----------
    path : path
        The ``.npz`` file.
    name : str, optional
        Dataset name; default: the file stem.
    """
    if path is None:
        raise ConfigError("dataset 'npz': set dataset.path to your .npz file")
    p = require_file(Path(path).expanduser(), dataset="npz", what="generic npz dataset")
    z = read_npz_arrays(p)
    if "modalities" not in z or "id" not in z:
        raise DataFormatError(f"{p}: needs arrays 'modalities' and 'id'; found {sorted(z)}")
    mods = [str(m) for m in z["modalities"]]
    missing = [m for m in mods if m not in z]
    if missing:
        raise DataFormatError(f"{p}: modalities {missing} are listed but have no array")
    bad_dims = {m: z[m].shape for m in mods if z[m].ndim not in (2, 3)}
    if bad_dims:
        raise DataFormatError(
            f"{p}: modality arrays must be [N, T, D] or [N, D]; got shapes {bad_dims}"
        )
    feats = {m: z[m] if z[m].ndim == 3 else z[m][:, None, :] for m in mods}
    targets, tspecs = {}, []
    for key in (k for k in z if k.startswith("target_")):  # file order: the first is the default
        tname = key[len("target_"):]
        y = z[key]
        if np.issubdtype(y.dtype, np.floating):
            rng = z.get(f"range_{tname}")
            value_range = tuple(map(float, rng)) if rng is not None else None
            tspecs.append(TargetSpec(tname, "regression", value_range=value_range))
        else:
            if f"classes_{tname}" not in z:
                raise DataFormatError(f"{p}: class target {tname!r} needs classes_{tname}")
            names = tuple(str(c) for c in z[f"classes_{tname}"])
            tspecs.append(TargetSpec(tname, "binary" if len(names) == 2 else "multiclass",
                                     class_names=names))
        targets[tname] = y
    if not tspecs:
        raise DataFormatError(f"{p}: no target_<name> array found")
    groups = {k[len("group_"):]: z[k] for k in z if k.startswith("group_")}
    spec = DatasetSpec(
        name=name or p.stem,
        modalities=tuple(ModalitySpec(m, feats[m].shape[2], feats[m].shape[1]) for m in mods),
        targets=tuple(tspecs),
        group_keys=tuple(groups),
    )
    return MultimodalDataset(
        spec,
        feats,
        targets=targets,
        ids=z["id"],
        groups=groups,
        lengths={m: z[f"{m}_lengths"] for m in mods if f"{m}_lengths" in z},
        present={m: z[f"{m}_present"] for m in mods if f"{m}_present" in z},
        splits={k[len("split_"):]: z[k] for k in z if k.startswith("split_")},
        info={"source": str(p)},
    )


def save_npz(ds: MultimodalDataset, path: str | Path) -> Path:
    """Write ``ds`` in the generic npz format, atomically (no partial file on error)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "modalities": np.array(ds.spec.modality_names, dtype=str),
        "id": ds.ids.astype(str),
    }
    for m in ds.spec.modality_names:
        arrays[m] = ds.features[m].cpu().numpy()
        arrays[f"{m}_lengths"] = ds.mask[m].sum(1).cpu().numpy()
        arrays[f"{m}_present"] = ds.present[m].cpu().numpy()
    for t in ds.spec.targets:
        arrays[f"target_{t.name}"] = ds.targets[t.name].cpu().numpy()
        if t.class_names:
            arrays[f"classes_{t.name}"] = np.array(t.class_names, dtype=str)
        if t.value_range:
            arrays[f"range_{t.name}"] = np.array(t.value_range, dtype=np.float64)
    for k, v in ds.groups.items():
        arrays[f"group_{k}"] = v.astype(str)
    for k, v in ds.splits.items():
        arrays[f"split_{k}"] = v.astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    from emodistill._fs import atomic_write

    return atomic_write(path, lambda f: np.savez(f, **arrays), mode="wb")


@DATASETS.register("npz")
def _npz(**p: Any) -> MultimodalDataset:
    return load_npz(p.pop("path", None), **p)
