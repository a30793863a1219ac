"""Closed-form per-patient gradients for Linear/ReLU MLPs (the ``"mlp"`` path of DP-SGD).

Why our own code: on the benchmark's MLP (30-32-1, ~250 patients x 1-4 rows per step) every
Opacus 1.6 ``grad_sample_mode`` costs 3-13x a plain backward pass (measured with
``python -m bench.dpsgd``: "ew" 3-3.8x, hooks 4.3-6.3x, "ghost" 4.5-6.9x, "functorch" 9-13x;
this module 0.8-1.3x; bench/README.md, DP-SGD section). Profiling put the time in Opacus's
Python backward hooks and in materialising ``[B, out, in]`` per-patient weight gradients only
to take their norms. For a ``Sequential`` of ``Linear`` and ``ReLU`` layers the backward pass
is three lines, so we do it by hand and never materialise what we do not need. The Opacus path stays the general engine
and the reference this one is tested against (``tests/privacy/test_mlp_grads.py``).

Per patient ``b`` and layer with input rows ``a[b]`` (``R x in``) and output gradients
``g[b]`` (``R x out``, zero on padded rows because the row weights multiply the residual):
the weight gradient is ``g[b]^T a[b]`` and the bias gradient ``sum_r g[b, r]``, so

    ||grad||^2 = sum_{r,s} (g_r . g_s) (a_r . a_s + 1)

(the "ghost norm" of Li et al. 2022 / Opacus's ghost clipping). That costs ``R^2 (in + out)``
per patient against ``R in out`` for materialising the gradient; each layer takes the cheaper
one. The clipped sum is one matmul over all rows with the output gradients rescaled by each
patient's clip factor -- the per-patient gradients are never formed.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp_layers(model: nn.Module, Xp: torch.Tensor) -> list[nn.Linear] | None:
    """The Linear layers if ``model`` is exactly Linear (ReLU Linear)* with one output, else None.

    Exact types only (a subclass may override ``forward``), no module hooks, every parameter
    trainable; and a probe checks that the hand-written forward reproduces ``model``'s logits.
    """
    if type(model) is not nn.Sequential or len(model) % 2 != 1:
        return None
    mods = list(model)
    layers = mods[0::2]
    if any(type(m) is not nn.Linear or m.bias is None for m in layers):
        return None
    if any(type(m) is not nn.ReLU for m in mods[1::2]) or layers[-1].out_features != 1:
        return None
    if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
           for m in [model, *mods]):
        return None
    if not all(p.requires_grad for p in model.parameters()) or layers[0].in_features != Xp.shape[-1]:
        return None
    with torch.no_grad():
        probe = Xp[: min(8, Xp.shape[0])]
        out = model(probe)
        return layers if torch.allclose(out, _forward(layers, probe)[0], atol=1e-5) else None


def _forward(layers, Xb):
    """Logits ``[B, R, 1]`` and each layer's input (the ReLU outputs after the first)."""
    inputs = [Xb]
    for layer in layers[:-1]:
        inputs.append(torch.relu(nn.functional.linear(inputs[-1], layer.weight, layer.bias)))
    return nn.functional.linear(inputs[-1], layers[-1].weight, layers[-1].bias), inputs


def _backprops(layers, Xb, mb, yb):
    """Each layer's input and output gradient of ``sum_r mb * BCE`` per row (``[B, R, *]``)."""
    logits, inputs = _forward(layers, Xb)
    g = (torch.sigmoid(logits.squeeze(-1)) - yb).mul_(mb).unsqueeze(-1)
    grads = [g]
    for i in range(len(layers) - 1, 0, -1):
        # ReLU backward (gradient where the ReLU output is > 0), the op autograd itself uses;
        # ad hoc timing on the bench shapes: ~12 us against ~100 us for a boolean-mask multiply.
        g = torch.ops.aten.threshold_backward(g @ layers[i].weight, inputs[i], 0)
        grads.append(g)
    return inputs, grads[::-1]


def _sq_norm(a: torch.Tensor, g: torch.Tensor, ghost: bool | None = None) -> torch.Tensor:
    """Squared norm of one layer's per-patient (weight, bias) gradient, ``[B]``.

    ``ghost=None`` picks the cheaper formula; tests force each to check they agree.
    """
    R, n_in, n_out = a.shape[1], a.shape[2], g.shape[-1]
    if ghost is None:
        if R == 1:
            return g[:, 0].square().sum(1) * (a[:, 0].square().sum(1) + 1)
        ghost = R * (n_in + n_out) < n_in * n_out
    if ghost:  # R x R Gram matrices only
        gg = torch.bmm(g, g.transpose(1, 2))
        aa = torch.bmm(a, a.transpose(1, 2)).add_(1.0)
        return (gg * aa).sum((1, 2)).clamp_min_(0)
    # One output: elementwise, as a batch of 1 x R by R x in matmuls is slow on CPU.
    gw = (g * a).sum(1) if n_out == 1 else torch.bmm(g.transpose(1, 2), a)
    return gw.flatten(1).square().sum(1) + g.sum(1).square().sum(1)


def clipped_sum(layers: list[nn.Linear], Xb: torch.Tensor, mb: torch.Tensor, yb: torch.Tensor,
                clip_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_b min(1, C/||g_b||) g_b`` flattened in ``parameters()`` order, norms ``[B]``)."""
    with torch.no_grad():
        inputs, grads = _backprops(layers, Xb, mb, yb)
        norms = sum(_sq_norm(a, g) for a, g in zip(inputs, grads, strict=True)).sqrt_()
        factor = torch.clamp(norms, min=clip_norm).reciprocal_().mul_(clip_norm)
        out = []
        for a, g in zip(inputs, grads, strict=True):
            gc = (g * factor[:, None, None]).reshape(-1, g.shape[-1])
            out += [(gc.t() @ a.reshape(-1, a.shape[-1])).reshape(-1), gc.sum(0)]
        return torch.cat(out), norms


def per_patient(layers: list[nn.Linear], Xb: torch.Tensor, mb: torch.Tensor,
                yb: torch.Tensor) -> torch.Tensor:
    """Materialised per-patient gradients ``[B, n_params]`` (tests and audits only)."""
    with torch.no_grad():
        inputs, grads = _backprops(layers, Xb, mb, yb)
        out = []
        for a, g in zip(inputs, grads, strict=True):
            out += [torch.bmm(g.transpose(1, 2), a).flatten(1), g.sum(1)]
        return torch.cat(out, 1)
