"""Members in parallel: N independent fits of one small method trained as one batched model.

A *member* is one fit of ``fit_fold`` (one seed on one fold). Members of the same
method and part sizes are trained together: their parameters are stacked
(``torch.func.stack_module_state``) and one ``torch.func.vmap`` over the member axis
runs every member's own forward and ``loss`` (the method's code, unchanged) on its
own batch. Each member keeps everything a sequential fit has:

* its data parts and normalisation (fitted on its own training part);
* its initialisation: the model is built exactly as ``fit_fold`` builds it (after
  ``seed_everything(seed)``), so the initial weights are identical;
* its shuffling: a ``torch.Generator`` seeded by the seed, drawn as the sequential
  ``RandomSampler`` draws it;
* its dropout: every ``nn.Dropout`` draws its mask from a per-member generator that
  continues the global random stream the sequential fit would use (its state right
  after the model is built; the one ``int64`` each DataLoader iterator draws is drawn
  too). A training epoch's masks are drawn in one ``uniform_`` per member (on CPU
  ``bernoulli_(q)`` is ``uniform_(0, 1) < q`` element by element, so one draw of the
  epoch's total size gives the per-call draws bit for bit, see :func:`_draw_keep`).
  On CPU the masks are therefore the very masks of the sequential fit (on a GPU
  they are drawn on the host from the same generators, while a sequential GPU fit draws
  on the device: equal in distribution only). The attention-weight dropout of
  ``nn.MultiheadAttention`` (as ``nn.TransformerEncoderLayer`` calls it) is drawn the
  same way (:class:`_MemberAttention`), and a mask is laid out in the memory order of
  the tensor it drops (``at::dropout`` fills it in that order), so transformer members
  match their sequential fits draw for draw too. Other random ops (another dropout
  module, input noise, a functional dropout) cannot be drawn so: the swap refuses such
  modules, :func:`parallel_unsupported` names ``input_noise``, and a training forward
  that still draws from the global stream is refused (``--parallel off`` trains it);
* its arithmetic: linear, layer-norm and convolution layers run, per member, the kernels
  the sequential fit runs, at the memory alignment it has (:mod:`.parallel_kernels`;
  vmap's batched rules round otherwise), or a batched formulation where a run-time check
  found it bit-equal to that loop for the layout at hand; so do batch norm
  (:mod:`.parallel_batchnorm`), the pointwise ops whose CPU loops round by an element's
  position (``sigmoid``, ``silu``, ...) and cross-entropy (:mod:`.parallel_pointwise`)
  and transformer encoder layers (the fit's attention kernel per member in training, its
  fused layer in evaluation: :mod:`.parallel_attention`), so on CPU a member equals its
  sequential fit bit for bit for the same thread count (``exact=False``, the default on a
  GPU, keeps vmap's batched rules);
* its optimiser (Adam / AdamW, elementwise, so stacking changes nothing), its own
  ``ReduceLROnPlateau`` learning rate, early stopping and best-checkpoint selection on
  its own validation part (Lightning's rules: strict improvement, first best epoch), or
  the last epoch's weights without early stopping under ``train.selection=last``;
* its single test evaluation on the selected weights, and its own fold folder with
  the files ``fit_fold`` writes (``metrics.csv``, ``predictions.csv``,
  ``test_metrics.json``, ``model.pt``).

Members that stop early leave the stack (it is compacted), so they cost nothing
afterwards. Members are trained in chunks whose size bounds memory.

A method opts in with the class attribute ``parallel_ok = True``;
:func:`parallel_unsupported` names the reason a config cannot use this path, and
the benchmark then falls back to one fit per member.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from emodistill._fs import atomic_write
from emodistill.checkpoint import save_checkpoint
from emodistill.config import to_container
from emodistill.data.batch import Batch
from emodistill.data.dataset import MultimodalDataset
from emodistill.data.normalize import Standardizer
from emodistill.data.protocols import Fold
from emodistill.errors import ConfigError
from emodistill.metrics.sets import stacked_metric_values
from emodistill.models import METHODS, MERModel, build_method
from emodistill.seeding import seed_everything
from emodistill.training.parallel_attention import (
    grad_needed,
    member_module,
    member_sdpa,
    swap_transformer_layers,
    vmapped_attention,
)
from emodistill.training.parallel_batchnorm import swap_batch_norms
from emodistill.training.parallel_kernels import (
    ALIGN_BYTES,
    LINEAR,
    MATMUL,
    dims_by_stride,
    member_kernels,
    member_layers_here,
    member_op,
    swap_kernels,
    unpermute,
)
from emodistill.training.parallel_pointwise import member_pointwise
from emodistill.training.pooling import pool_folds
from emodistill.training.run import (
    FoldResult,
    Prepared,
    RunResult,
    _write_fold_result,
    _write_predictions,
    config_fold_parts,
    fold_context,
    fold_fingerprint,
    write_results,
)
from emodistill.training.run_folders import remove_checkpoints

__all__ = ["Member", "parallel_unsupported", "fit_members", "run_parallel", "chunk_size"]

log = logging.getLogger(__name__)

_PARTS = ("train", "valid", "test")


@dataclass
class Member:
    """One fit to run: ``fit_fold(prep, fold, out)`` done in parallel with others."""

    prep: Prepared
    fold: Fold
    out: Path


def parallel_unsupported(cfg: DictConfig) -> str | None:
    """Return why ``cfg`` cannot train on the parallel path, or ``None`` if it can."""
    name = str(cfg.method.name)
    cls = METHODS.get(name)
    if not getattr(cls, "parallel_ok", False):
        return f"method {name!r} does not declare parallel_ok"
    if cls.manual_optimization():
        return f"method {name!r} runs its own optimisation steps"
    if str(cfg.method.get("context") or "none") != "none":
        return f"method.context={cfg.method.context} (utterance context: batches of whole videos)"
    teacher = cfg.method.get("teacher")
    if teacher is not None:
        if teacher.get("crossfit"):
            return "method.teacher.crossfit (cross-fitted teachers) is not supported in parallel"
        if str(cfg.method.get("teacher_mode", "eval")) != "eval":
            return "method.teacher_mode=train draws teacher dropout; only eval is supported"
        tname = (teacher.get("method") or {}).get("name")
        if tname and not getattr(METHODS.get(str(tname)), "stacks_as_teacher", True):
            return (f"its teacher {tname!r} cannot be stacked (fitted tables whose shapes "
                    "differ from member to member)")
        if not teacher.get("checkpoint"):
            if not teacher.get("method"):
                return "method.teacher has neither checkpoint nor method"
            why = (None if _teacher_fitted_in_process(cfg)
                   else parallel_unsupported(_teacher_cfg(cfg)))
            if why is not None:
                return f"its teacher cannot train in parallel ({why})"
    if float(cfg.method.get("kd_mixup") or 0.0) > 0:
        # the mixing draws come from the method's own generator inside loss(); under vmap
        # every member would share one draw (and the mixed batch a second forward)
        return (f"method.kd_mixup={cfg.method.kd_mixup} (function-matching mixup draws from "
                "the method's own generator per fit; the sequential path trains it)")
    for where, sec in (("method", cfg.method), ("method.student", cfg.method.get("student"))):
        if sec is not None and float(sec.get("input_noise") or 0.0) > 0:
            # torch.randn_like inside vmap: other values than the sequential fit's draws
            return (f"{where}.input_noise={sec.input_noise} (Gaussian input noise is drawn per "
                    "member inside vmap, not as the sequential fit draws it)")
    ds = cfg.get("dataset", {})
    if ds.get("text_level") == "ids" or ds.get("text_input") == "tokens":
        # the text transformer trains with its own lr group, warm-up and dynamic padding
        return "token-id text inputs (a text encoder trained inside the model)"
    t = cfg.train
    if t.get("selection", "best") not in ("best", "last"):
        return f"train.selection={t.get('selection')!r} is not supported in parallel"
    checks = {
        "train.optimizer": (t.get("optimizer", "adamw") in ("adam", "adamw"), "adam or adamw"),
        "train.scheduler": (t.get("scheduler", "none") in ("plateau", "none"), "plateau/none"),
        "train.gradient_clip_val": (t.get("gradient_clip_val") is None, "null"),
        "train.accumulate_grad_batches": (int(t.accumulate_grad_batches) == 1, "1"),
        "train.precision": (str(t.precision) in ("32-true", "32"), "32-true"),
        "train.compile": (not t.compile, "false"),
        "train.strategy": (str(t.strategy) == "auto" and int(t.devices) == 1,
                           "auto on one device"),
    }
    for key, (ok, want) in checks.items():
        if not ok:
            return f"{key} is not supported in parallel (needs {want})"
    if int(t.max_epochs) < 1:
        return "train.max_epochs=-1 (unbounded) is not supported in parallel"
    return None


def _teacher_fitted_in_process(cfg: DictConfig) -> bool:
    """Tell whether the teacher of ``cfg`` is a reference method fitted in one call.

    Such a teacher (``logistic``, ``trees``, ...) is fitted per member by ``fit_fold`` before
    the students train in parallel: it has no gradient loop to stack, and its fit is cheap.
    """
    name = str(cfg.method.teacher.method.name)
    return bool(getattr(METHODS.get(name), "fitted_in_process", False))


def _teacher_cfg(cfg: DictConfig) -> DictConfig:
    """Build the teacher's run config as ``obtain_teacher`` builds it."""
    from omegaconf import OmegaConf

    tcfg = to_container(cfg.method.teacher)
    sub = OmegaConf.create(to_container(cfg))
    sub.method = tcfg["method"]
    sub.method_config = f"teacher-{tcfg['method']['name']}"
    if tcfg.get("train"):
        sub.train = OmegaConf.merge(sub.train, tcfg["train"])
    return sub


# -- per-member randomness ---------------------------------------------------------------------


class _Draws:
    """Dropout masks handed to the vmapped forward (set per step by the engine)."""

    record: list[tuple[float, torch.Size, tuple[int, ...] | None]] | None = None
    masks: list[Tensor] = []
    pos: int = 0


_DRAWS = _Draws()


def _member_drop(x: Tensor, p: float) -> Tensor:
    """Dropout of ``x`` with rate ``p`` whose keep-mask is the member's next one (see module doc).

    The masks come from :data:`_DRAWS` (set per step by the engine); in a shape probe
    (``_DRAWS.record`` set, outside ``vmap``) the call is recorded and ``x`` returned:
    its rate, its shape in memory order and the dims in memory order (``None`` when
    ``x`` is contiguous). ``at::dropout`` fills its mask (``empty_like(x)``, which keeps
    ``x``'s layout) in memory order, so a transposed ``x`` (e.g. the attention output of
    ``nn.MultiheadAttention``) gets its draws in that order, not the logical one.
    """
    if p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return x * torch.zeros((), dtype=x.dtype, device=x.device)
    if _DRAWS.record is not None:  # shape probe (outside vmap)
        perm = _memory_order(x)
        _DRAWS.record.append((p, torch.Size(x.shape[d] for d in perm),
                              None if perm == tuple(range(x.dim())) else perm))
        return x
    mask = _DRAWS.masks[_DRAWS.pos]
    _DRAWS.pos += 1
    return x * mask


def _memory_order(x: Tensor) -> tuple[int, ...]:
    """Dims of ``x`` from outermost to innermost in memory (the order ``empty_like`` keeps)."""
    return dims_by_stride(torch.empty_like(x).stride())


def _to_logical(mask: Tensor, perm: tuple[int, ...] | None) -> Tensor:
    """``[N, *memory-order shape]`` masks → ``[N, *logical shape]`` (``perm`` from the probe)."""
    return mask if perm is None else unpermute(mask, perm)


class _MemberDropout(nn.Module):
    """``nn.Dropout`` whose mask comes from the member's own generator (see module doc)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return _member_drop(x, self.p) if self.training else x


class _MemberAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` with member draws and, under ``vmap``, member kernels.

    Swapped in (``__class__``, so the parameter names stay) for self-attention with
    packed projections, no ``bias_k``/``add_zero_attn`` and ``batch_first``, the way
    ``nn.TransformerEncoderLayer`` calls it (``need_weights=False``, no ``attn_mask``).
    For that call the forward is torch's own path written out
    (``F.multi_head_attention_forward``), its in- and out-projections member kernels:

    * in training with ``dropout > 0``: the math kernel of ``scaled_dot_product_attention``
      (the one a CPU fit with dropout runs), the dropout of the attention weights
      ``[B, H, L, S]`` drawn as a member mask (``at::dropout``: ``x * mask`` with
      ``mask = bernoulli(1 - p) / (1 - p)``, one call, in the same place of the draw order);
    * otherwise, under ``vmap`` with member kernels, while a gradient is needed: the fit's
      own ``scaled_dot_product_attention`` once per member (on CPU the flash kernel,
      forward and backward; :func:`~.parallel_attention.member_sdpa`).

    Under ``vmap`` with member kernels and no gradient needed (evaluation), the whole
    module runs once per member (its fused fast path where the fit takes it;
    :func:`~.parallel_attention.member_module`). The residual uses of the input stay in
    the caller's graph, so its gradient sums in the sequential fit's order. Other calls
    (``need_weights``, ``attn_mask``, cross-attention) run the parent's forward, batched.
    """

    @staticmethod
    def swappable(m: nn.MultiheadAttention) -> bool:
        """Whether ``m`` has the layout whose training forward is written out here."""
        return (type(m) is nn.MultiheadAttention and m.batch_first and m._qkv_same_embed_dim
                and m.bias_k is None and m.bias_v is None and not m.add_zero_attn)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,  # type: ignore[override]
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """As ``nn.MultiheadAttention.forward``; see the class doc for the member draws."""
        drop = self.training and self.dropout > 0.0
        looped = member_layers_here(query, self.in_proj_weight)
        plain = (need_weights or attn_mask is not None or is_causal
                 or not (query is key is value) or query.dim() != 3)
        if looped and not plain and not grad_needed(query, self.in_proj_weight):
            def call(q: Tensor, pad: Tensor | None) -> Tensor:
                return nn.MultiheadAttention.forward(self, q, q, q, key_padding_mask=pad,
                                                     need_weights=False)[0]

            n_draws = int(drop and self.dropout < 1.0)
            return member_module(self, call, (query, key_padding_mask), n_draws), None
        if plain or not (drop or looped):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, attn_mask=attn_mask,
                                   average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        from torch.nn import functional as F

        x = query.transpose(1, 0)  # [L, B, E], as the parent does for batch_first
        tgt_len, bsz, embed_dim = x.shape
        heads, head_dim = self.num_heads, embed_dim // self.num_heads
        mask = F._canonical_mask(mask=key_padding_mask, mask_name="key_padding_mask",
                                 other_type=None, other_name="attn_mask",
                                 target_type=x.dtype)
        # F._in_projection_packed for self-attention, its linear a member kernel
        proj = member_op(F.linear, x, self.in_proj_weight, self.in_proj_bias,
                         batched=LINEAR)
        proj = proj.unflatten(-1, (3, embed_dim)).unsqueeze(0).transpose(0, -2).squeeze(
            -2).contiguous()
        q, k, v = proj[0], proj[1], proj[2]
        q = q.view(tgt_len, bsz * heads, head_dim).transpose(0, 1)
        k = k.view(k.shape[0], bsz * heads, head_dim).transpose(0, 1)
        v = v.view(v.shape[0], bsz * heads, head_dim).transpose(0, 1)
        src_len = k.size(1)
        if mask is not None:
            mask = mask.view(bsz, 1, 1, src_len).expand(-1, heads, -1, -1).reshape(
                bsz * heads, 1, src_len)
            mask = mask.unsqueeze(0) if mask.size(0) == 1 else mask.view(bsz, heads, -1,
                                                                            src_len)
        q = q.view(bsz, heads, tgt_len, head_dim)
        k = k.view(bsz, heads, src_len, head_dim)
        v = v.view(bsz, heads, src_len, head_dim)
        if not drop:  # the fit's own kernel (flash on CPU), once per member
            out = member_sdpa(q, k, v, mask)
            out = out.permute(2, 0, 1, 3).contiguous().view(bsz * tgt_len, embed_dim)
            out = member_op(F.linear, out, self.out_proj.weight, self.out_proj.bias,
                            batched=LINEAR)
            return out.view(tgt_len, bsz, out.size(1)).transpose(1, 0), None
        # aten's _scaled_dot_product_attention_math
        s = math.sqrt(1.0 / math.sqrt(head_dim))
        attn = member_op(torch.matmul, q * s, k.transpose(-2, -1) * s, batched=MATMUL)
        if mask is not None:
            attn = attn + mask
        attn = torch._safe_softmax(attn, -1)
        attn = _member_drop(attn, float(self.dropout))
        out = member_op(torch.matmul, attn, v, batched=MATMUL)
        out = out.permute(2, 0, 1, 3).contiguous().view(bsz * tgt_len, embed_dim)
        out = member_op(F.linear, out, self.out_proj.weight, self.out_proj.bias,
                        batched=LINEAR)
        return out.view(tgt_len, bsz, out.size(1)).transpose(1, 0), None


_DRAWN_ELSEWHERE = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                    nn.FeatureAlphaDropout)


def _swap_dropout(module: nn.Module) -> None:
    """Make every dropout of ``module`` draw member masks (in place).

    Every ``nn.TransformerEncoderLayer`` (``module`` included) becomes a
    :class:`~emodistill.training.parallel_attention.MemberEncoderLayer`, which hands
    each member's call of the layer that member's masks.

    Raises
    ------
    ValueError
        For a dropout this path cannot draw as the sequential fit does (its members
        would differ from their sequential fits in distribution only).
    """
    _swap_dropout_modules(module)
    swap_transformer_layers(module)  # one walk over the whole tree


def _swap_dropout_modules(module: nn.Module) -> None:
    """:func:`_swap_dropout` without the encoder-layer swap, recursively."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, _MemberDropout(float(child.p)))
            continue
        if isinstance(child, nn.MultiheadAttention) and _MemberAttention.swappable(child):
            child.__class__ = _MemberAttention  # member kernels (and draws) for any dropout
        elif (isinstance(child, nn.MultiheadAttention) and child.dropout > 0
              and not isinstance(child, _MemberAttention)):
            raise ValueError(f"{name}: this nn.MultiheadAttention layout (needs "
                             "batch_first self-attention, packed projections, no "
                             "bias_k/add_zero_attn) has no member draws of its attention "
                             "dropout")
        elif isinstance(child, _DRAWN_ELSEWHERE) and float(child.p) > 0:
            raise ValueError(f"{name}: {type(child).__name__} has no member draws (only "
                             "nn.Dropout and the attention dropout of nn.MultiheadAttention)")
        _swap_dropout_modules(child)


@dataclass
class _MaskPlan:
    """Where each dropout call of an epoch's training steps sits in the epoch's draws.

    ``steps[i]`` lists ``(p, shape, offset)`` of step ``i``'s dropout calls in call
    order; ``keep_p`` is each drawn element's keep probability ``1 - p`` (``[total]``,
    float64) or one float when every call has the same ``p``.
    """

    steps: list[list[tuple[float, torch.Size, int]]]
    total: int
    keep_p: Tensor | float


def _mask_plan(shapes_per_step: Sequence[Sequence[tuple[float, torch.Size]]]) -> _MaskPlan:
    """Lay out an epoch's dropout draws (``probe`` shapes of each step, in order)."""
    steps, off, ps = [], 0, []
    for shapes in shapes_per_step:
        row = []
        for p, shape in shapes:
            row.append((p, shape, off))
            n = math.prod(shape)
            ps.append((1.0 - p, n))
            off += n
        steps.append(row)
    if len({k for k, _ in ps}) <= 1:
        keep_p: Tensor | float = ps[0][0] if ps else 1.0
    else:
        keep_p = torch.cat([torch.full((n,), k, dtype=torch.float64) for k, n in ps])
    return _MaskPlan(steps, off, keep_p)


def _draw_keep(plan: _MaskPlan, gens: Sequence[torch.Generator]) -> Tensor:
    """Every member's dropout keep-masks of one epoch, ``[N, total]`` bool, in one draw each.

    On CPU, ``bernoulli_(q, generator=g)`` draws one float64 ``uniform_(0, 1)`` per
    element, serially, and keeps the element when it is ``< q``; successive calls
    continue the same stream. So one ``uniform_`` of the epoch's total size per member
    gives bit for bit the masks (and the generator state) of the sequential fit's
    per-call draws, at a fraction of the per-call cost.
    """
    keep = torch.empty((len(gens), plan.total), dtype=torch.bool)
    if not _uniform_is_bernoulli():  # e.g. MKL's per-call Bernoulli on Intel CPUs
        for j, g in enumerate(gens):
            for row in plan.steps:
                for p, shape, off in row:
                    n = math.prod(shape)
                    keep[j, off:off + n] = torch.empty(n).bernoulli_(1 - p, generator=g) > 0
        return keep
    u = torch.empty(plan.total, dtype=torch.float64)
    for j, g in enumerate(gens):
        u.uniform_(0.0, 1.0, generator=g)
        torch.lt(u, plan.keep_p, out=keep[j])
    return keep


@functools.lru_cache(maxsize=1)
def _uniform_is_bernoulli() -> bool:
    """Check that per-call ``bernoulli_`` draws equal one ``uniform_`` draw on this CPU.

    True for torch's default CPU kernel (one float64 uniform per element); on Intel CPUs
    with MKL, ``bernoulli_`` draws a seed per call instead, and the masks are then drawn
    call by call as the sequential fit draws them.
    """
    g = torch.Generator().manual_seed(12345)
    calls = [torch.empty(n).bernoulli_(q, generator=g) for n, q in ((37, 0.8), (64, 0.5))]
    state = g.get_state()
    g.manual_seed(12345)
    u = torch.empty(101, dtype=torch.float64).uniform_(0.0, 1.0, generator=g)
    want = torch.cat([u[:37] < 0.8, u[37:] < 0.5]).float()
    return torch.equal(torch.cat(calls), want) and torch.equal(g.get_state(), state)


def _scaled(keep: Tensor, dev: torch.device, scale: Tensor) -> Tensor:
    """Dropout multipliers ``keep * scale`` (float32 ``1/(1-p)`` or ``0``) on ``dev``.

    The same values as ``torch.where(keep, scale, 0)`` (``1 * s == s``, ``0 * s == +0``),
    in half its time: a conversion and one multiplication, both vectorised.
    """
    return keep.to(dev, torch.float32).mul_(scale)


def _loader_iter_draw(g: torch.Generator) -> None:
    """Draw the one int64 a DataLoader iterator draws from the global stream (``_base_seed``)."""
    torch.empty((), dtype=torch.int64).random_(generator=g)


# -- setup of one member (the same steps as fit_fold) ------------------------------------------


@dataclass
class _Setup:
    member: Member
    cfg: DictConfig
    parts: dict[str, MultimodalDataset]
    std: Standardizer | None
    model: MERModel
    drop_gen: torch.Generator
    shuffle_gen: torch.Generator
    # filled while training
    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = float("nan")
    test: dict[str, float] = field(default_factory=dict)
    test_outputs: list[Any] = field(default_factory=list)


def _setup(member: Member, teacher: tuple[MERModel, Tensor | None] | None = None) -> _Setup:
    """Build the member as ``fit_fold`` does.

    ``teacher``: its model and the global random state the sequential fit has after
    training it (``None`` for a loaded checkpoint).
    """
    prep, fold = member.prep, member.fold
    cfg, ds, target = prep.cfg, prep.dataset, prep.target
    seed_everything(int(cfg.seed))
    parts, std = config_fold_parts(cfg, ds, fold, out=member.out)  # as fit_fold
    params = to_container(cfg.method)
    name = params.pop("name")
    params.setdefault("modalities", prep.modalities)
    if params.get("teacher") is not None:
        assert teacher is not None
        params["teacher"] = teacher[0]
        if teacher[1] is not None:
            torch.set_rng_state(teacher[1])
    ctx = fold_context(prep, fold, member.out, parts={k: parts[k] for k in ("train", "valid")})
    params.update(METHODS.get(name).prepare_fold(ctx, params))
    model = build_method(name, spec=parts["train"].spec, target=target, params=params)
    drop_gen = torch.Generator()
    drop_gen.set_state(torch.get_rng_state())  # the global stream as the fit would continue it
    shuffle_gen = torch.Generator().manual_seed(int(cfg.seed))
    return _Setup(member, cfg, parts, std, model, drop_gen, shuffle_gen)


def _signature(s: _Setup) -> tuple:
    shapes = tuple((k, tuple(v.shape)) for k, v in s.model.state_dict().items())
    sizes = tuple(len(s.parts[k]) for k in _PARTS)
    t = s.cfg.train
    train = (int(t.batch_size), int(t.max_epochs), str(t.monitor), str(t.mode),
             str(t.get("scheduler", "none")), str(t.get("optimizer", "adamw")),
             str(t.get("selection", "best")))
    return (type(s.model).__name__, str(s.cfg.method), shapes, sizes, train)


# -- the stacked optimiser (torch's single-tensor Adam/AdamW, per-member lr) -------------------


class _StackedAdam:
    """Adam/AdamW over stacked ``[N, ...]`` parameters; the learning rate is per member.

    The update is torch's ``_single_tensor_adam`` elementwise, so member ``i`` gets
    exactly the step its own optimiser would make (bit for bit while all members
    share one learning rate; to rounding once ``ReduceLROnPlateau`` has split them).
    """

    def __init__(self, params: dict[str, Tensor], train_cfg: dict[str, Any]) -> None:
        self.decoupled = train_cfg.get("optimizer", "adamw") == "adamw"
        self.wd = float(train_cfg.get("weight_decay", 0.0))
        self.beta1, self.beta2, self.eps = 0.9, 0.999, 1e-8
        self.params = params
        self.exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in params.items()}
        self._bufs: dict[str, Tensor] = {}
        self.step_count = 0

    def keep(self, idx: Tensor) -> None:
        self.exp_avg = {k: v[idx] for k, v in self.exp_avg.items()}
        self.exp_avg_sq = {k: v[idx] for k, v in self.exp_avg_sq.items()}
        self._bufs = {}

    def _buf(self, k: str, like: Tensor) -> Tensor:
        """Return a scratch tensor shaped like ``like`` (the denominator), kept between steps."""
        b = self._bufs.get(k)
        if b is None or b.shape != like.shape:
            b = self._bufs[k] = torch.empty_like(like)
        return b

    @torch.no_grad()
    def step(self, params: dict[str, Tensor], lrs: list[float],
             grads: dict[str, Tensor] | None = None) -> None:
        self.step_count += 1
        step = self.step_count
        same = all(lr == lrs[0] for lr in lrs)
        bc1 = 1 - self.beta1**step
        bc2_sqrt = (1 - self.beta2**step) ** 0.5
        for k, p in params.items():
            g = p.grad if grads is None else grads[k]
            if g is None:
                continue
            shape = (-1,) + (1,) * (p.ndim - 1)
            if self.wd != 0:
                if self.decoupled:
                    if same:
                        p.mul_(1 - lrs[0] * self.wd)
                    else:
                        p.mul_(torch.tensor([1 - lr * self.wd for lr in lrs],
                                            dtype=p.dtype, device=p.device).view(shape))
                else:
                    g = g.add(p, alpha=self.wd)
            m, v = self.exp_avg[k], self.exp_avg_sq[k]
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = torch.sqrt(v, out=self._buf(k, v)).div_(bc2_sqrt).add_(self.eps)
            if same:
                p.addcdiv_(m, denom, value=-(lrs[0] / bc1))
            else:
                neg = torch.tensor([-(lr / bc1) for lr in lrs], dtype=p.dtype,
                                   device=p.device).view(shape)
                p.add_(neg * m / denom)


#: torch's note when a gradient keeps a non-dense parameter's strides (see _FlatParams)
_LAYOUT_WARNING = "grad and param do not obey the gradient layout contract"


class _FlatParams:
    """Stacked parameters ``[N, ...]`` kept as views of one ``[N, P]`` buffer.

    Each view is a leaf whose ``.grad`` is preset to the matching view of one
    ``[N, P]`` gradient buffer, so ``backward`` accumulates every gradient into that
    buffer in place and the optimiser updates all parameters with one kernel per
    operation (the same elementwise arithmetic, so the same values). Only for
    models whose every parameter receives a gradient (an unused parameter would get
    a zero gradient here, and weight decay, where ``torch.optim`` skips it).

    Every member's every parameter starts on a 64-byte boundary (offsets and the row
    length are padded with zeros, which the optimiser leaves at zero), as a parameter
    of a sequential fit does: MKL's ``gemm``/``gemv`` round differently for operands
    at other alignments (measured), so this is part of the member kernels' exactness.
    The views are therefore not dense, and torch's "gradient layout contract" note for such
    a parameter (that its gradient should be contiguous) is filtered while a chunk trains:
    here the strided gradient is the point.
    """

    def __init__(self, params: dict[str, Tensor]) -> None:
        first = next(iter(params.values()))
        n = first.shape[0]
        per = max(1, ALIGN_BYTES // first.element_size())
        self.layout: dict[str, tuple[int, int, torch.Size]] = {}
        off = 0
        for k, v in params.items():
            self.layout[k] = (off, v[0].numel(), v.shape[1:])
            off += -(-v[0].numel() // per) * per
        self.data = first.new_zeros((n, off))
        for k, v in params.items():
            o, numel, _ = self.layout[k]
            self.data[:, o:o + numel] = v.detach().reshape(n, -1)
        self._views()

    def _views(self) -> None:
        self.grad = torch.zeros_like(self.data)
        self.params: dict[str, Tensor] = {}
        for k, (off, numel, shape) in self.layout.items():
            p = self.data[:, off:off + numel].view(-1, *shape).requires_grad_(True)
            p.grad = self.grad[:, off:off + numel].view(-1, *shape)
            self.params[k] = p

    def keep(self, idx: Tensor) -> None:
        """Keep the members ``idx`` (rows of the buffers)."""
        self.data = self.data[idx]
        self._views()


def _all_params_used(base: nn.Module, one: dict[str, Tensor], batch: Batch) -> bool:
    """Whether one training forward + loss of ``base`` reaches every parameter."""
    from torch.nn.utils.stateless import _reparametrize_module

    p = {k: v.detach().clone().requires_grad_(True) for k, v in one.items()}
    base.train()
    with _reparametrize_module(base, p):
        out = base(batch)
        loss = base.loss(batch, out)["loss"]
    grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
    return all(g is not None for g in grads)


# -- the engine --------------------------------------------------------------------------------


def chunk_size(setups: Sequence[Any], budget_bytes: int | None = None) -> int:
    """Members per chunk so that stacked state and data stay under ``budget_bytes``.

    The estimate counts, per member, 4 copies of the parameters (weights, gradient,
    two Adam moments, plus the best copy), the member's data parts, and 32 activations
    of ``batch_size x widest layer`` per parameter tensor; the default budget is 4 GiB on
    CPU and half the free memory of a GPU.
    """
    if budget_bytes is None:
        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            budget_bytes = free // 2
        else:
            budget_bytes = 4 << 30
    s = setups[0]
    n_params = sum(p.numel() for p in s.model.parameters())
    data = sum(v.numel() * v.element_size() for part in s.parts.values()
               for v in part.features.values())
    widest = max((p.shape[0] for p in s.model.parameters() if p.ndim >= 1), default=1)
    bs = int(s.cfg.train.batch_size)
    acts = 32 * bs * widest * 4 * len(list(s.model.parameters()))
    per = 5 * n_params * 4 + data + acts
    return max(1, min(len(setups), budget_bytes // max(per, 1)))


def fit_members(
    members: Sequence[Member],
    *,
    max_chunk: int | None = None,
    device: str | torch.device | None = None,
    exact: bool | None = None,
) -> list[FoldResult]:
    """Train ``members`` in parallel and write each one's fold folder.

    Parameters
    ----------
    members : sequence of Member
        Fits of one method (their configs may differ in seed; folds may differ).
        Every config must pass :func:`parallel_unsupported`.
    max_chunk : int, optional
        At most this many members in one stacked model (default: as many as the
        memory estimate of :func:`chunk_size` allows).
    device : str or torch.device, optional
        Where to train (default: ``cuda`` when available and the config's
        ``train.accelerator`` is not ``cpu``, else ``cpu``).
    exact : bool, optional
        Run linear, layer-norm and convolution layers with the sequential fit's kernels,
        once per member, or batched where checked bit-equal to that
        (:mod:`emodistill.training.parallel_kernels`), so a member equals its sequential
        fit bit for bit on CPU. ``False`` runs them with vmap's batched rules, which
        round about one ulp differently per step where they differ (layer norm,
        convolution, some linear shapes), which training can grow into other selected
        epochs (``benchmarks/parallel.md``; there, too, what each costs). Default:
        ``True`` on CPU, ``False`` on a GPU (where dropout is drawn on the host, so a
        member equals its sequential fit in distribution only, and a loop over members
        would serialise the kernels). ``None`` reads each config's
        ``train.parallel_kernels`` (``exact`` | ``batched`` | ``auto``: the device default).

    Returns
    -------
    list of FoldResult
        In the order of ``members``, as ``fit_fold`` would return them.
    """
    return [r for r, _ in _fit(members, max_chunk=max_chunk, device=device, exact=exact)]


def _teacher_prep(m: Member) -> Prepared:
    """Prepare ``m``'s teacher run: its config, ``m``'s data, ``m``'s fold only."""
    return Prepared(_teacher_cfg(m.prep.cfg), m.prep.dataset, m.prep.target, m.prep.modalities,
                    [m.fold])


def _exact_kernels(cfg: DictConfig, dev: torch.device, exact: bool | None) -> bool:
    """Whether a chunk runs per-member kernels: ``exact``, else ``train.parallel_kernels``."""
    if exact is not None:
        return exact
    kind = cfg.train.get("parallel_kernels", "auto")
    return dev.type == "cpu" if kind == "auto" else kind == "exact"


def _fit(members: Sequence[Member], *, max_chunk: int | None,
         device: str | torch.device | None, exact: bool | None = None
         ) -> list[tuple[FoldResult, _Setup]]:
    from emodistill.training.run import _load_teacher_checkpoint, fit_fold

    checked: set[int] = set()  # members of one Prepared share its config: check it once
    for m in members:
        if id(m.prep.cfg) in checked:
            continue
        why = parallel_unsupported(m.prep.cfg)
        if why is not None:
            raise ValueError(f"member {m.out}: {why}")
        checked.add(id(m.prep.cfg))
    teachers: list[tuple[MERModel, Tensor | None] | None] = [None] * len(members)
    need = [i for i, m in enumerate(members) if m.prep.cfg.method.get("teacher") is not None]
    trained = [i for i in need if not members[i].prep.cfg.method.teacher.get("checkpoint")]
    for i in need:
        if i not in trained:
            m = members[i]
            model = _load_teacher_checkpoint(m.prep.cfg, m.prep.dataset, m.prep.target, m.fold)
            if not getattr(model, "stacks_as_teacher", True):
                raise ConfigError(
                    f"member {m.out}: the teacher checkpoint holds a {type(model).__name__} "
                    "model, which cannot be stacked on the parallel path; run with --parallel "
                    "off (or name it in method.teacher.method so --parallel auto falls back)")
            teachers[i] = (model, None)
    fitted = [i for i in trained if _teacher_fitted_in_process(members[i].prep.cfg)]
    trained = [i for i in trained if i not in fitted]
    for i in fitted:  # a reference teacher, fitted in one call on its fold as fit_fold does
        m = members[i]
        tprep = _teacher_prep(m)
        res = fit_fold(tprep, m.fold, m.out / "teacher")
        log.info("teacher %s on %s: test %s", tprep.cfg.method_config, res.fold, res.test)
        assert res.model is not None
        # the global random state the sequential fit continues from after its teacher
        teachers[i] = (res.model, torch.get_rng_state())
    if trained:  # each member's teacher, trained on its fold first (in parallel too)
        tm = [Member(_teacher_prep(members[i]), members[i].fold, members[i].out / "teacher")
              for i in trained]
        for i, (res, ts) in zip(trained, _fit(tm, max_chunk=max_chunk, device=device, exact=exact),
                                strict=True):
            log.info("teacher %s on %s: test %s", ts.cfg.method_config, res.fold, res.test)
            assert res.model is not None
            teachers[i] = (res.model, ts.drop_gen.get_state())
    setups = [_setup(m, t) for m, t in zip(members, teachers, strict=True)]
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(setups):
        groups.setdefault(_signature(s), []).append(i)
    results: dict[int, FoldResult] = {}
    for idx in groups.values():
        group = [setups[i] for i in idx]
        n = chunk_size(group) if max_chunk is None else max(1, min(max_chunk, len(group)))
        for start in range(0, len(group), n):
            chunk = group[start:start + n]
            dev = _device(chunk[0].cfg, device)
            log.info("parallel: training %d member(s) of %s as one stacked model on %s",
                     len(chunk), chunk[0].cfg.method.name, dev)
            was = torch.are_deterministic_algorithms_enabled()
            want = bool(chunk[0].cfg.train.deterministic) or was
            if want != was:  # the call imports torch's compiler (seconds): only to change it
                torch.use_deterministic_algorithms(want)
            try:
                with member_kernels(_exact_kernels(chunk[0].cfg, dev, exact)), \
                        warnings.catch_warnings():
                    # the gradients are, by design, views of the padded [N, P] buffer with
                    # their parameters' strides (what AccumulateGrad notes for a parameter
                    # that is not dense); the optimiser then steps the buffer whole
                    warnings.filterwarnings("ignore", message=_LAYOUT_WARNING)
                    _train_chunk(chunk, dev)
            finally:
                if want != was:
                    torch.use_deterministic_algorithms(was)
            for j, s in zip(idx[start:start + n], chunk, strict=True):
                results[j] = _finish(s)
    return [(results[i], setups[i]) for i in range(len(members))]


def _device(cfg: DictConfig, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available() and str(cfg.train.accelerator) != "cpu":
        return torch.device("cuda")
    return torch.device("cpu")


def _stack_part(setups: list[_Setup], part: str, target: str, dev: torch.device
                ) -> dict[str, Any]:
    ds = [s.parts[part] for s in setups]
    mods = list(ds[0].features)
    return {
        "inputs": {m: torch.stack([d.features[m] for d in ds]).to(dev) for m in mods},
        "mask": {m: torch.stack([d.mask[m] for d in ds]).to(dev) for m in mods},
        "present": {m: torch.stack([d.present[m] for d in ds]).to(dev) for m in mods},
        "target": torch.stack([d.targets[target] for d in ds]).to(dev),
    }


def _gather(data: dict[str, Any], rows: Tensor) -> dict[str, Any]:
    """Rows ``[N, B]`` of each member's stacked part → batch tensors ``[N, B, ...]``.

    One ``index_select`` per tensor on the member-flattened part ``[N * n, ...]``.
    """
    n_mem, b = rows.shape
    n = data["target"].shape[1]
    flat = (rows + torch.arange(n_mem, device=rows.device)[:, None] * n).reshape(-1)

    def take(v: Tensor) -> Tensor:
        return v.reshape(n_mem * n, *v.shape[2:]).index_select(0, flat).view(
            n_mem, b, *v.shape[2:])

    out = {k: {m: take(v) for m, v in data[k].items()} for k in ("inputs", "mask", "present")}
    out["target"] = take(data["target"])
    out["index"] = rows
    return out


def _rows(data: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Rows ``start:stop`` of every member's stacked part (the same rows for all: a slice)."""
    out = {k: {m: v[:, start:stop] for m, v in data[k].items()}
           for k in ("inputs", "mask", "present")}
    out["target"] = data["target"][:, start:stop]
    out["index"] = torch.arange(start, stop, device=data["target"].device)[None].expand(
        data["target"].shape[0], -1)
    return out


def _keep(d: Any, idx: Tensor) -> Any:
    if isinstance(d, dict):
        return {k: _keep(v, idx) for k, v in d.items()}
    return d[idx]


_FLAT_VMAP_PARAMS = ["func", "batch_size", "flat_in_dims", "flat_args", "args_spec",
                     "out_dims", "randomness"]


def _vmap0(f: Any, args: tuple) -> Any:
    """``vmap(f, randomness="different")(*args)`` over dim 0 of every tensor in ``args``.

    Calls torch's flat entry point directly when it is there (torch 2.x
    ``torch._functorch.vmap._flat_vmap``): the public wrapper re-derives and checks the
    ``in_dims`` of every leaf on each call, ~3 ms per call for the ~60 tensors of a
    late-fusion step, which is a large part of a 5-member step. Same computation.
    """
    from torch.func import vmap
    from torch.utils._pytree import tree_flatten

    try:
        from torch._functorch.vmap import _flat_vmap, lazy_load_decompositions
    except ImportError:  # another torch: the public path
        return vmap(f, randomness="different")(*args)
    if list(inspect.signature(_flat_vmap).parameters)[:7] != _FLAT_VMAP_PARAMS:
        return vmap(f, randomness="different")(*args)  # its signature moved: the public path
    lazy_load_decompositions()
    flat, spec = tree_flatten(args)
    return _flat_vmap(f, flat[0].shape[0], [0] * len(flat), flat, spec, 0, "different")


def _train_chunk(setups: list[_Setup], dev: torch.device) -> None:
    from torch.func import stack_module_state
    from torch.nn.utils.stateless import _reparametrize_module

    s0 = setups[0]
    cfg = s0.cfg
    tcfg = to_container(cfg.train)
    target = s0.member.prep.target
    monitor, mode = str(cfg.train.monitor), str(cfg.train.mode)
    bs, max_epochs, patience = int(tcfg["batch_size"]), int(tcfg["max_epochs"]), int(
        tcfg["patience"])
    models = [s.model.to(dev) for s in setups]
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    buffers = {k: v.detach().clone() for k, v in buffers.items()}
    base = copy.deepcopy(s0.model)
    _swap_dropout(base)
    swap_kernels(base)  # linear, layer norm, conv: the sequential fit's kernels per member
    swap_batch_norms(base)  # batch norm too (its running statistics per member)
    # a teacher → student method: every member's own teacher, stacked the same way
    teacher_base = base._teacher[0] if getattr(base, "_teacher", None) else None
    if teacher_base is not None:
        swap_kernels(teacher_base)
        swap_batch_norms(teacher_base)
        swap_transformer_layers(teacher_base)  # its eval forward: the fused layer per member
    tstate: dict[str, Tensor] = {}
    if teacher_base is not None:
        tp, tb = stack_module_state([s.model._teacher[0].to(dev) for s in setups])
        tstate = {k: v.detach() for k, v in {**tp, **tb}.items()}
    tstate_all = tstate
    data = {p: _stack_part(setups, p, target.name, dev) for p in _PARTS}
    n_rows = {p: len(s0.parts[p]) for p in _PARTS}
    opt = _StackedAdam(params, tcfg)
    plateau = tcfg.get("scheduler", "none") == "plateau"
    scheds, dummies = [], []
    for _ in setups:
        d = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=float(tcfg["lr"]))
        dummies.append(d)
        scheds.append(torch.optim.lr_scheduler.ReduceLROnPlateau(
            d, mode=mode, factor=tcfg["scheduler_factor"], patience=tcfg["scheduler_patience"])
            if plateau else None)
    # train.selection=last (a fixed recipe): no early stopping, the last epoch's weights
    last = str(tcfg.get("selection", "best")) == "last"
    sign = 1.0 if mode == "min" else -1.0
    best_score = [math.inf] * len(setups)  # in "min" orientation (sign * value)
    es_best = [math.inf] * len(setups)
    wait = [0] * len(setups)
    best_state: dict[str, Tensor] = {k: v.detach().clone() for k, v in {**params,
                                                                         **buffers}.items()}
    have_best = [False] * len(setups)
    active = list(range(len(setups)))  # positions (in setups) of the stacked rows
    # batch rows -> the dropout calls of one training forward: (rate, shape in memory
    # order, memory order or None when contiguous), as the shape probe recorded them
    probed: dict[int, list[tuple[float, torch.Size, tuple[int, ...] | None]]] = {}

    def call(p: dict[str, Tensor], b: dict[str, Tensor], batch: dict[str, Any],
             masks: list[Tensor], want: str, t: dict[str, Tensor]) -> Any:
        def f(p: dict[str, Tensor], b: dict[str, Tensor], batch: dict[str, Any],
              masks: list[Tensor], t: dict[str, Tensor]) -> Any:
            _DRAWS.masks, _DRAWS.pos = masks, 0
            bt = Batch(**batch)
            state = dict(vars(base))
            with contextlib.ExitStack() as stack:
                stack.enter_context(_reparametrize_module(base, {**p, **b}))
                if teacher_base is not None:
                    stack.enter_context(_reparametrize_module(teacher_base, t))
                out = base(bt)
                losses = base.loss(bt, out)
                res: dict[str, Any] = {"losses": losses}
                if want != "train":
                    res["preds"] = out.preds
                    res["values"] = base.predict_values(out)
                    res["aux"] = {k: v for k, v in out.aux.items()
                                  if k.startswith("sample_") or k == "gates"}
                    tg = getattr(base, "_teacher_gates", None)
                    if tg is not None:  # HintonKD: the teacher's gates on this batch
                        res["aux"]["teacher_gates"] = tg[0] / tg[1]
            for k in ("_gate_sum", "_gate_n", "_teacher_gates"):  # eval-time side effects
                if k in state:
                    setattr(base, k, state[k])
            return res

        # batched attention through the math kernel (batching rules for every op, no
        # per-member fallback loop), without the fused encoder-layer fast path; a member
        # encoder layer runs each member under the sequential fit's settings instead
        # and the pointwise ops whose CPU loops round by position (and cross-entropy),
        # per member too
        with vmapped_attention(), member_pointwise():
            return _vmap0(f, (p, b, batch, masks, t))

    def single(batch_rows: int) -> Batch:
        """Return the first ``batch_rows`` training rows of the first member as a plain batch."""
        d, r = data["train"], torch.arange(batch_rows, device=dev)
        one = {k: {m: t[0, r] for m, t in d[k].items()} for k in ("inputs", "mask", "present")}
        return Batch(**one, target=d["target"][0, r], index=r)

    def probe(batch_rows: int) -> list[tuple[float, torch.Size]]:
        """Rates and shapes of the dropout calls of one training forward of ``batch_rows`` rows."""
        if batch_rows in probed:
            return [(p, shape) for p, shape, _ in probed[batch_rows]]
        one = {k: v[0].detach().clone() for k, v in {**params, **buffers}.items()}
        _DRAWS.record = []
        rng = torch.get_rng_state()
        try:
            with torch.no_grad(), _reparametrize_module(base, one):
                base.train()
                base(single(batch_rows))
            shapes = list(_DRAWS.record)
        finally:
            _DRAWS.record = None
        if not torch.equal(torch.get_rng_state(), rng):
            raise ValueError(
                f"{type(base).__name__} draws random numbers in training outside nn.Dropout "
                "and the attention dropout of nn.MultiheadAttention (e.g. noise or a "
                "functional dropout), which the parallel path cannot draw as the sequential "
                "fit does; train it with --parallel off")
        probed[batch_rows] = shapes
        return [(p, shape) for p, shape, _ in shapes]

    # every parameter reached by the loss: one [N, P] buffer (one kernel per Adam operation)
    flat: _FlatParams | None = None
    state = dict(vars(base))
    _DRAWS.record = []
    try:
        with torch.random.fork_rng(devices=[]):
            used = _all_params_used(base, {k: v[0] for k, v in params.items()},
                                    single(min(bs, n_rows["train"])))
    finally:
        _DRAWS.record = None
        for k in ("_gate_sum", "_gate_n", "_teacher_gates"):
            if k in state:
                setattr(base, k, state[k])
    if used:
        flat = _FlatParams(params)
        params = flat.params
        opt = _StackedAdam({"flat": flat.data}, tcfg)

    for epoch in range(max_epochs):
        if not active:
            break
        stacked_train = data["train"]
        # -- train epoch
        base.train()
        perms = []
        for pos in active:
            s = setups[pos]
            _loader_iter_draw(s.drop_gen)
            perms.append(torch.randperm(n_rows["train"], generator=s.shuffle_gen))
            # RandomSampler draws a second (empty-sliced) permutation when it is exhausted:
            # to end a partial last batch; after a full last batch Lightning does not ask for
            # more (measured with and without a validation part; drawing it there shuffled
            # every later epoch otherwise, e.g. 48 MMSA rows in batches of 16)
            if n_rows["train"] % bs:
                torch.randperm(n_rows["train"], generator=s.shuffle_gen)
        perm = torch.stack(perms).to(dev)  # [N, n_train]
        sums: dict[str, Tensor] = {}
        seen = 0
        lrs = [dummies[pos].param_groups[0]["lr"] for pos in active]
        plan = _mask_plan([probe(min(bs, n_rows["train"] - st))
                           for st in range(0, n_rows["train"], bs)])
        keep_masks = _draw_keep(plan, [setups[pos].drop_gen for pos in active])
        scale = {p: torch.ones((), device=dev).div_(1 - p) for row in plan.steps for p, _, _ in row}
        for step, start in enumerate(range(0, n_rows["train"], bs)):
            rows = perm[:, start:start + bs]
            b = rows.shape[1]
            # the mask values of the sequential fit: bernoulli 0/1 in float32, div_(1 - p)
            calls = plan.steps[step]
            if calls and len({c[0] for c in calls}) == 1:  # one rate: one multiply for the step
                first, (_, shape_l, off_l) = calls[0][2], calls[-1]
                block = _scaled(keep_masks[:, first:off_l + math.prod(shape_l)], dev,
                                scale[calls[0][0]])
                masks = [block[:, off - first:off - first + math.prod(shape)].reshape(
                    -1, *shape) for _, shape, off in calls]
            else:
                masks = [_scaled(keep_masks[:, off:off + math.prod(shape)].reshape(-1, *shape),
                                 dev, scale[p_drop]) for p_drop, shape, off in calls]
            masks = [_to_logical(m, order) for m, (_, _, order) in zip(masks, probed[b],
                                                                       strict=True)]
            batch = _gather(stacked_train, rows)
            res = call(params, buffers, batch, masks, "train", tstate)
            losses = res["losses"]
            total = losses["loss"].sum()
            if flat is not None:
                flat.grad.zero_()
                total.backward()
                opt.step({"flat": flat.data}, lrs, {"flat": flat.grad})
            else:
                for v in params.values():
                    v.grad = None
                total.backward()
                opt.step(params, lrs)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v.detach().float() * b
            seen += b
        train_logs = {k: (v / seen).cpu() for k, v in sums.items()}
        # -- validation (none under protocol.valid_fraction=0: no loader, no draw)
        base.eval()
        for pos in active if n_rows["valid"] else ():
            _loader_iter_draw(setups[pos].drop_gen)
        vsums: dict[str, Tensor] = {}
        vpreds, gates, tgates = [], [], []
        with torch.no_grad():
            for start in range(0, n_rows["valid"], bs):
                vb = _rows(data["valid"], start, min(start + bs, n_rows["valid"]))
                res = call(params, buffers, vb, [], "valid", tstate)
                b = vb["index"].shape[1]
                for k, v in res["losses"].items():
                    vsums[k] = vsums.get(k, 0) + v.float() * b
                vpreds.append(res["preds"])
                if "gates" in res["aux"]:
                    gates.append(res["aux"]["gates"])
                if "teacher_gates" in res["aux"]:
                    tgates.append(res["aux"]["teacher_gates"] * b)
        val_logs = {k: (v / n_rows["valid"]).cpu().tolist() for k, v in vsums.items()}
        train_lists = {k: v.tolist() for k, v in train_logs.items()}
        val_mets = (stacked_metric_values(target, torch.cat(vpreds, 1).cpu(),
                                          data["valid"]["target"].cpu())
                    if vpreds else [{} for _ in active])
        finished, improved = [], []
        for j, pos in enumerate(active):
            s = setups[pos]
            row: dict[str, float] = {"epoch": epoch}
            vals = {f"val/{'task_loss' if k == 'task' else k}": v[j]
                    for k, v in val_logs.items()}
            vals.update({f"val/{k}": v for k, v in val_mets[j].items()})
            row.update({k: round(v, 6) for k, v in vals.items()})
            if gates and hasattr(s.model, "_gate_sum"):
                g = torch.cat([x[j] for x in gates]).mean(0).tolist()
                row.update({f"model/gate_{m}": round(float(v), 6)
                            for m, v in zip(s.model.modalities, g, strict=True)})
            if tgates and teacher_base is not None:
                g = (sum(x[j] for x in tgates) / n_rows["valid"]).tolist()
                row.update({f"model/teacher_gate_{m}": round(float(v), 6)
                            for m, v in zip(teacher_base.modalities, g, strict=True)})
            row.update({f"train/{'task_loss' if k == 'task' else k}": round(v[j], 6)
                        for k, v in train_lists.items()})
            row["lr"] = dummies[pos].param_groups[0]["lr"]
            s.rows.append(row)
            cur = vals.get(monitor, math.nan)  # nan without a validation part (selection=last)
            oriented = sign * cur if math.isfinite(cur) else math.inf
            # ModelCheckpoint: the first epoch always saves; later ones on strict improvement
            if last or not have_best[pos] or oriented < best_score[pos]:
                best_score[pos], have_best[pos] = oriented, True
                s.best_epoch, s.best_val = epoch, cur
                improved.append((j, pos))
            # EarlyStopping (min_delta 0, check_finite)
            stop = False
            if last:
                pass
            elif not math.isfinite(cur):
                stop = True
            elif sign * cur < es_best[pos]:
                es_best[pos], wait[pos] = sign * cur, 0
            else:
                wait[pos] += 1
                stop = wait[pos] >= patience
            if scheds[pos] is not None:
                scheds[pos].step(cur)
            if stop or epoch == max_epochs - 1:
                finished.append(j)
        if improved:  # the selected weights, copied for every improved member at once
            js = torch.tensor([j for j, _ in improved], device=dev)
            ps = torch.tensor([pos for _, pos in improved], device=dev)
            with torch.no_grad():
                for k, v in {**params, **buffers}.items():
                    best_state[k].index_copy_(0, ps, v.detach().index_select(0, js))
        if finished:
            keep = torch.tensor([j for j in range(len(active)) if j not in finished],
                                dtype=torch.long, device=dev)
            active = [pos for j, pos in enumerate(active) if j not in finished]
            if flat is not None:
                flat.keep(keep)
                params = flat.params
            else:
                params = {k: v.detach()[keep].clone().requires_grad_(True)
                          for k, v in params.items()}
            buffers = {k: v[keep].clone() for k, v in buffers.items()}
            opt.keep(keep)
            tstate = {k: v[keep] for k, v in tstate.items()}
            data = {p: _keep(d, keep) for p, d in data.items()}
    # -- test once, on the selected weights of every member
    base.eval()
    sel_p = {k: best_state[k] for k in params}
    sel_b = {k: best_state[k] for k in buffers}
    data_t = _stack_part(setups, "test", target.name, dev)
    outs: list[dict[str, Any]] = []
    with torch.no_grad():
        for start in range(0, n_rows["test"], bs):
            batch = _rows(data_t, start, min(start + bs, n_rows["test"]))
            rows = batch["index"]
            res = call(sel_p, sel_b, batch, [], "test", tstate_all)
            outs.append({"rows": rows, "preds": res["preds"], "values": res["values"],
                         "target": batch["target"],
                         "aux": {k: v for k, v in res["aux"].items() if k.startswith("sample_")}})
    test_mets = stacked_metric_values(target, torch.cat([o["preds"] for o in outs], 1).cpu(),
                                      torch.cat([o["target"] for o in outs], 1).cpu())
    for j, s in enumerate(setups):
        _loader_iter_draw(s.drop_gen)
        s.test = test_mets[j]
        s.test_outputs = [(o["rows"][j].cpu(), o["values"][j].cpu(), o["target"][j].cpu(),
                            {k: v[j].cpu() for k, v in o["aux"].items()}) for o in outs]
        s.model.load_state_dict({k: best_state[k][j].detach().clone()
                                 for k in s.model.state_dict()})
        s.model.cpu()


def _finish(s: _Setup) -> FoldResult:
    """Write the member's fold folder exactly as ``fit_fold`` does."""
    out, cfg, prep, fold = s.member.out, s.cfg, s.member.prep, s.member.fold
    out.mkdir(parents=True, exist_ok=True)
    _write_rows(out / "metrics.csv", s.rows)
    shim = SimpleNamespace(test_outputs=s.test_outputs)
    _write_predictions(out / "predictions.csv", shim, s.parts["test"], prep.target)  # type: ignore[arg-type]
    atomic_write(out / "test_metrics.json", lambda f: json.dump(s.test, f, indent=2))
    sizes = {k: len(v) for k, v in s.parts.items()}
    if cfg.train.save_checkpoint:
        save_checkpoint(
            out / "model.pt", s.model, config=to_container(cfg), standardizer=s.std,
            meta={"fold": fold.name, "test_metrics": s.test, "best_epoch": s.best_epoch,
                  "sizes": sizes, "data_fingerprint": prep.dataset.fingerprint(),
                  "fold_fingerprint": fold_fingerprint(prep.dataset, fold)},
        )
    s.model.eval()
    result = FoldResult(fold.name, s.test, s.best_epoch, len(s.rows), sizes, out, s.model,
                        s.best_val)
    _write_fold_result(result)  # as fit_fold: marks the fold finished for a resume
    remove_checkpoints(out)  # as fit_fold (a fold begun sequentially, then continued here)
    return result


def _write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    import csv

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def write(f: Any) -> None:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write)



def run_parallel(
    cfgs: Sequence[DictConfig],
    *,
    dataset: MultimodalDataset | None = None,
    output_dir: str | Path | None = None,
    max_chunk: int | None = None,
    device: str | torch.device | None = None,
    resume: Sequence[str | Path | None] | None = None,
    exact: bool | None = None,
) -> list[RunResult]:
    """``run_experiment`` for several configs (seeds) of one method, all folds in parallel.

    Each config gets its own run folder with the files ``run_experiment`` writes
    (``config.yaml``, ``data.json``, ``results.json`` and one folder per fold).
    The data is loaded once (pass ``dataset``, or it is built from the first config)
    and shared by every member.

    ``resume`` (one entry per config, ``None`` for a new run) names interrupted run
    folders to continue in place, as ``run_experiment(resume=...)`` does: a fold that
    finished (its ``fold_result.json``) is read back and not trained again; the others
    are trained again from their start, in parallel (the parallel path keeps no
    training checkpoints; a member's fit is deterministic, so a retrained fold gets the
    metrics it would have had; a KD member's teacher is retrained with it, since its
    random state after training is part of the student's draws).
    ``exact``: as in :func:`fit_members`.
    """
    from emodistill.data.registry import build_dataset
    from emodistill.training.run import (
        _read_fold_result,
        default_run_name,
        new_run_dir,
        prepare,
    )
    from emodistill.training.run_folders import check_resumable

    resume = list(resume) if resume is not None else [None] * len(cfgs)
    if len(resume) != len(cfgs):
        raise ValueError(f"resume has {len(resume)} entries for {len(cfgs)} configs")
    if dataset is None:
        dataset = build_dataset(to_container(cfgs[0].dataset))
    preps = [prepare(c, dataset) for c in cfgs]  # every config checked before any file
    for cfg, prep, old in zip(cfgs, preps, resume, strict=True):
        if old is not None:
            check_resumable(Path(old), cfg, prep.dataset.fingerprint())
    runs, members, owner = [], [], []
    done: dict[tuple[int, str], FoldResult] = {}
    for i, (cfg, prep, old) in enumerate(zip(cfgs, preps, resume, strict=True)):
        if old is not None:
            run_dir = Path(old)
        else:
            parent = Path(output_dir or cfg.output_dir)
            run_dir = new_run_dir(prep, parent / (cfg.run_name
                                                  or default_run_name(cfg, prep.target)))
        runs.append(RunResult(run_dir))
        for fold in prep.folds:
            res = _read_fold_result(run_dir / fold.name) if old is not None else None
            if res is not None:
                log.info("parallel: %s read back (finished before the interruption)",
                         run_dir / fold.name)
                done[(i, fold.name)] = res
                continue
            members.append(Member(prep, fold, run_dir / fold.name))
            owner.append((i, fold.name))
    fitted = (fit_members(members, max_chunk=max_chunk, device=device, exact=exact)
              if members else [])
    done.update(zip(owner, fitted, strict=True))
    for i, prep in enumerate(preps):
        runs[i].folds.extend(done[(i, fold.name)] for fold in prep.folds)
    for prep, result in zip(preps, runs, strict=True):
        write_results(prep, pool_folds(prep, result), path="parallel")
    return runs

