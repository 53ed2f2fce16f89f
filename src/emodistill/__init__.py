"""emodistill: multimodal emotion recognition with cross-modal knowledge distillation.

Importing the package has no side effects; heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load"]

if TYPE_CHECKING:  # pragma: no cover
    from emodistill.serving.predict import Predictor


def load(checkpoint: Any, **kwargs: Any) -> Predictor:
    """Load a trained checkpoint (``model.pt``) for inference.

    A lazy alias of :func:`emodistill.serving.predict.load` (torch and the
    models are imported on the first call, not at package import).

    Examples
    --------
    >>> import emodistill
    >>> predictor = emodistill.load("runs/<run>/<fold>/model.pt")  # doctest: +SKIP
    >>> predictor.predict(text=text_features, audio=audio_features).to_records()  # doctest: +SKIP
    """
    from emodistill.serving.predict import load as _load

    return _load(checkpoint, **kwargs)
