"""Tiny MAHNOB-HCI sessions (BioSemi BDF + session.xml) written with pyEDFlib.

Needs the 'eeg' extra; import it after ``pytest.importorskip("pyedflib")``.
"""

from __future__ import annotations

import numpy as np
import pyedflib

from emodistill.data.formats.mahnob import MAHNOB_CHANNELS

__all__ = ["FS_SRC", "PRE", "POST", "UPPER_BITS", "write_bdf", "write_xml"]

PRE, POST = 2.0, 1.0
FS_SRC = 256
UPPER_BITS = (1 << 20) | (1 << 22)  # BioSemi status bits above the trigger bits


def write_bdf(path, stim_seconds, valence):
    n = int((PRE + stim_seconds + POST) * FS_SRC)
    t = np.arange(n) / FS_SRC
    rng = np.random.default_rng(int(stim_seconds * 10) + valence)
    headers, data = [], []
    for i, label in enumerate(MAHNOB_CHANNELS):
        if label == "Status":
            st = np.full(n, UPPER_BITS, dtype=np.float64)
            on, off = int(PRE * FS_SRC), int((PRE + stim_seconds) * FS_SRC)
            st[on:on + 10] += 1  # onset trigger
            st[off:off + 10] += 2  # offset trigger
            headers.append(dict(label=label, dimension="Boolean", sample_frequency=FS_SRC,
                                physical_max=8388607, physical_min=-8388608,
                                digital_max=8388607, digital_min=-8388608,
                                transducer="Triggers and Status", prefilter="No filtering"))
            data.append(st)
            continue
        if label == "GSR1":
            x = 1000.0 * t  # a ramp: value = time in ms, locates the cut exactly
        elif i < 32:
            x = (5.0 + valence) * np.sin(2 * np.pi * 10 * t + i) + rng.standard_normal(n)
        else:
            x = rng.standard_normal(n)
        headers.append(dict(label=label, dimension="uV", sample_frequency=FS_SRC,
                            physical_max=262143, physical_min=-262144,
                            digital_max=8388607, digital_min=-8388608,
                            transducer="", prefilter=""))
        data.append(x)
    w = pyedflib.EdfWriter(str(path), len(MAHNOB_CHANNELS), file_type=pyedflib.FILETYPE_BDF)
    try:
        w.setSignalHeaders(headers)
        w.writeSamples(data)
    finally:
        w.close()


def write_xml(path, sid, subject, v, a, d, p, emo, video, bdf, emotion=True, cut=60.0):
    felt = (f'feltEmo="{emo}" feltArsl="{a}" feltVlnc="{v}" feltCtrl="{d}" feltPred="{p}" '
            if emotion else "")
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<session cutNr="1" cutLenSec="{cut}" sessionId="{sid}" mediaFile="{video}" '
        f'isStim="{1 if emotion else 0}" {felt}>\n'
        f'  <subject id="{subject}" />\n'
        f'  <track type="Physiological" id="1" filename="{bdf}" />\n'
        "</session>\n"
    )
