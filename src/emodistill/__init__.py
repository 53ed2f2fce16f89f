"""emodistill: multimodal emotion recognition with cross-modal knowledge distillation.

Importing the package has no side effects; heavy modules load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
