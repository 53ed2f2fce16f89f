"""Utterance context on the data side: ordering, whole videos, layouts, sequences, loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.data.batch import ContextLayout
from emodistill.data.context import (
    check_transcripts,
    check_whole_videos,
    group_videos,
    sequence_inputs,
    to_sequences,
    utterance_positions,
)
from emodistill.data.formats.synthetic import make_synthetic_mer
from emodistill.errors import EmptyTranscriptError, UtteranceOrderError, VideoSplitError
from emodistill.training.loaders import batch_loader, video_batch_loader

VEC = {"text": (1, 6, 1.2), "audio": (1, 4, 0.5)}


def _ds(n: int = 24, per_video: int = 4, **kw):
    return make_synthetic_mer(n, seed=0, modalities=VEC, samples_per_video=per_video, **kw)


def test_videos_are_ordered_by_the_integer_utterance_index():
    ds = _ds()
    perm = np.array([2, 0, 3, 1] + list(range(4, 24)))  # rows of video 0 shuffled
    shuffled = ds.subset(perm)
    shuffled.ids = np.array(["syn0000_10", "syn0000_2", "syn0000_11", "syn0000_9",
                             *shuffled.ids[4:].tolist()])
    videos = group_videos(shuffled)
    assert len(videos) == 6
    # index order 2 < 9 < 10 < 11 (numeric, not lexicographic)
    assert shuffled.ids[videos[0]].tolist() == ["syn0000_2", "syn0000_9", "syn0000_10",
                                                "syn0000_11"]
    assert sorted(np.concatenate(videos).tolist()) == list(range(24))


@pytest.mark.parametrize("ids, match", [
    (["a_1", "a_x"], "gives no order"),
    (["a_1", "a"], "gives no order"),
    (["a_1", "a_01"], "index 1"),
])
def test_ids_that_give_no_order_are_a_named_error(ids, match):
    with pytest.raises(UtteranceOrderError, match=match):
        utterance_positions(ids, ["a"] * len(ids))


def test_a_video_in_two_parts_is_a_named_error():
    ds = _ds()
    check_whole_videos(ds, {"train": np.arange(8), "test": np.arange(8, 24)})
    with pytest.raises(VideoSplitError, match="video '1'.*train.*test"):
        check_whole_videos(ds, {"train": np.arange(6), "test": np.arange(6, 24)})


def test_an_empty_transcript_is_a_named_error():
    check_transcripts(["good", "bad"], ["v_1", "v_2"])
    with pytest.raises(EmptyTranscriptError, match="'v_2'"):
        check_transcripts(["good", "  "], ["v_1", "v_2"])
    with pytest.raises(EmptyTranscriptError, match="utterance 0"):
        check_transcripts([float("nan")])  # an empty CSV cell read by pandas


def test_layout_maps_utterances_to_videos_and_back():
    lay = ContextLayout.from_lengths([2, 3, 1])
    assert lay.mask.tolist() == [[True, True, False], [True, True, True],
                                 [True, False, False]]
    x = torch.arange(6.0)[:, None].repeat(1, 2)  # [N=6, 2]
    v = lay.to_videos(x)
    assert v.shape == (3, 3, 2)
    assert v[1, :, 0].tolist() == [2.0, 3.0, 4.0] and v[0, 2].abs().sum() == 0
    assert torch.equal(lay.to_utterances(v), x)


def test_sequence_inputs_put_the_utterance_last_after_its_window():
    x = torch.arange(5.0)[:, None]  # one video of 5 utterances, value = position
    seq, mask = sequence_inputs(x, torch.ones(5, dtype=torch.bool), [5], window=1)
    assert seq.shape == (5, 3, 1)
    assert seq[0, :, 0].tolist() == [1.0, 0.0, 0.0] and mask[0].tolist() == [True, True, False]
    assert seq[2, :, 0].tolist() == [1.0, 3.0, 2.0] and mask[2].all()
    # an absent modality of a context utterance is masked out, not fed as zeros
    present = torch.tensor([True, False, True, True, True])
    _, mask = sequence_inputs(x, present, [5], window=1)
    assert mask[2].tolist() == [False, True, True]


def test_to_sequences_keeps_rows_and_stays_inside_each_video():
    ds = _ds()
    seq = to_sequences(ds, window=None)
    assert len(seq) == len(ds) and seq.ids.tolist() == ds.ids.tolist()
    assert seq.spec.modality("text").seq_len == 4
    for i in range(len(ds)):  # the last real step is the utterance itself
        last = int(seq.mask["text"][i].sum()) - 1
        assert torch.equal(seq.features["text"][i, last], ds.features["text"][i, 0])
    # nothing from another video: every step equals some utterance of the same video
    v = ds.groups["video"]
    for i in range(len(ds)):
        same = ds.features["text"][v == v[i], 0]
        for s in seq.features["text"][i][seq.mask["text"][i]]:
            assert (same == s).all(1).any()


def test_video_loader_yields_every_utterance_once_as_the_plain_loader_does():
    ds = _ds(n=30, per_video=3)
    plain = torch.cat([b.index for b in batch_loader(ds, "sentiment", batch_size=7,
                                                     shuffle=False)])
    videos = group_videos(ds)
    batches = list(video_batch_loader(ds, "sentiment", videos, batch_size=7, shuffle=True,
                                      seed=1))
    # 10 whole videos of 3 packed up to 7 utterances: two videos per batch
    assert [b.size for b in batches] == [6] * 5
    flat = torch.cat([b.index for b in batches])
    assert sorted(flat.tolist()) == sorted(plain.tolist())  # same utterances, same count
    for b in batches:
        assert b.context is not None and b.context.n_utterances == b.size
        vid = ds.groups["video"][b.index.numpy()]
        grid = vid[b.context.rows.numpy()]
        for row, m in zip(grid, b.context.mask.numpy(), strict=True):
            assert len(set(row[m])) == 1  # one video per layout row
