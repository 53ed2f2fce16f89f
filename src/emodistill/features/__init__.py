"""Feature extraction for users' own raw data: text (local sentence encoder) and audio (openSMILE).

The heavy back-ends (transformers, opensmile) are optional extras, imported
only when an extractor is created:

* :mod:`emodistill.features.text` (``pip install 'emodistill[text]'``),
* :mod:`emodistill.features.audio` (``pip install 'emodistill[audio]'``).
"""

__all__ = ["text", "audio"]
