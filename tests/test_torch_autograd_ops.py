"""The torch adapter's custom autograd ops for double backprop (Hamiltonian models): the
layout-choosing matmul and swish with a hand-written second derivative. Each must give the plain
op's values and derivatives of every order (float64)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


SHAPES = [
    ((5, 12, 3), (5, 3, 12)),  # narrow contraction (LieConv's dense product, n = 3 points)
    ((5, 12, 12), (5, 12, 3)),  # narrow N: computed transposed
    ((5, 3, 12), (5, 12, 12)),  # narrow M
    ((7, 4), (4, 9)),  # plain matrices
]


@pytest.mark.parametrize("sa,sb", SHAPES)
def test_layout_matmul_values_and_derivatives_of_every_order(torch1, sa, sb):
    """_LayoutMatmul = matmul in value (1e-13), first and second derivatives (gradcheck,
    gradgradcheck), and its double-backward graph gives autograd's own numbers for a loss built
    from a gradient, as the Hamiltonian training step does."""
    from lieconv_torch.adapter import _LayoutMatmul

    a = torch.randn(sa, generator=_gen(1), dtype=torch.float64, requires_grad=True)
    b = torch.randn(sb, generator=_gen(2), dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_LayoutMatmul.apply(a, b), a @ b, rtol=1e-13, atol=1e-13)
    assert torch.autograd.gradcheck(_LayoutMatmul.apply, (a, b))
    assert torch.autograd.gradgradcheck(_LayoutMatmul.apply, (a, b))

    def loss(mm):
        y = torch.tanh(mm(a, b))
        (ga,) = torch.autograd.grad(torch.sum(y ** 3), a, create_graph=True)
        return torch.sum(ga * ga)

    want = torch.autograd.grad(loss(torch.matmul), (a, b))
    got = torch.autograd.grad(loss(_LayoutMatmul.apply), (a, b))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sa,sb", [((5, 12, 3), (5, 3, 12)), ((4, 3), (3, 9))])
def test_narrow_contraction_gradients_as_one_op_to_third_order(torch1, monkeypatch, sa, sb):
    """With a narrow K and both inputs differentiated under create_graph, _LayoutMatmul's
    gradients come from one op (_MatmulGrads, whose own derivative w.r.t. g is one product over
    the joined K axis); the loss built from both gradients, its gradient and a third derivative
    equal autograd's through plain matmul (1e-12). Control: without create_graph the gradients
    are plain products (the op only serves double backprop)."""
    from lieconv_torch.adapter import _LayoutMatmul, _MatmulGrads

    a = torch.randn(sa, generator=_gen(3), dtype=torch.float64, requires_grad=True)
    b = torch.randn(sb, generator=_gen(4), dtype=torch.float64, requires_grad=True)

    def derivatives(mm):
        y = torch.tanh(mm(a, b))
        ga, gb = torch.autograd.grad(torch.sum(y ** 3), (a, b), create_graph=True)
        loss = torch.sum(ga * ga) + torch.sum(torch.sin(gb))
        da, db = torch.autograd.grad(loss, (a, b), create_graph=True)
        third = torch.autograd.grad(torch.sum(da ** 2) + torch.sum(db * b), (a, b))
        return ga, (loss, da, db, *third)

    ga, got = derivatives(_LayoutMatmul.apply)
    assert ga.grad_fn.name() == "_MatmulGradsBackward"
    _, want = derivatives(torch.matmul)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    calls = []
    forward = _MatmulGrads.forward
    monkeypatch.setattr(_MatmulGrads, "forward",
                        staticmethod(lambda ctx, *xs: calls.append(1) or forward(ctx, *xs)))
    plain = torch.autograd.grad(torch.sum(_LayoutMatmul.apply(a, b) ** 2), (a, b))
    assert not calls
    torch.testing.assert_close(plain[0], 2 * (a @ b) @ b.mT, rtol=1e-12, atol=1e-12)
    torch.autograd.grad(torch.sum(_LayoutMatmul.apply(a, b) ** 2), (a, b), create_graph=True)
    assert calls == [1]
    wide_a = torch.randn(5, 12, 20, dtype=torch.float64, requires_grad=True)
    wide_b = torch.randn(5, 20, 3, dtype=torch.float64, requires_grad=True)
    gw, _ = torch.autograd.grad(torch.sum(_LayoutMatmul.apply(wide_a, wide_b) ** 2),
                                (wide_a, wide_b), create_graph=True)
    assert gw.grad_fn.name() != "_MatmulGradsBackward"  # K = 20 is not narrow


def test_layout_matmul_computes_narrow_products_transposed(torch1):
    """Narrow N comes back as a transposed view (the faster layout), the others contiguous;
    control: the adapter routes broadcasting and wide products to plain matmul."""
    import array_api_compat.torch as xpt
    from lieconv_torch.adapter import ADAPTER, _LayoutMatmul, _matmul_wide_rows

    a = torch.randn(5, 12, 12, dtype=torch.float64)
    b = torch.randn(5, 12, 3, dtype=torch.float64)
    assert not _matmul_wide_rows(a, b).is_contiguous()
    assert _matmul_wide_rows(b.mT, a).is_contiguous()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 4, 12, dtype=torch.float64)
    assert ADAPTER.matmul(xpt, x, y).grad_fn.name() == "_LayoutMatmulBackward"
    wide = ADAPTER.matmul(xpt, torch.randn(5, 20, 20, requires_grad=True),
                          torch.randn(5, 20, 20))
    assert wide.grad_fn.name() != "_LayoutMatmulBackward"
    bcast = ADAPTER.matmul(xpt, torch.randn(5, 3, 4, requires_grad=True), torch.randn(4, 12))
    assert bcast.grad_fn.name() != "_LayoutMatmulBackward"
    torch.testing.assert_close(_LayoutMatmul.apply(a, b), a @ b, rtol=1e-13, atol=1e-13)


def test_wide_linear_weight_gradients_in_out_in_layout(torch1):
    """A wide weight (in >= 8·out) that autograd differentiates enters the adapter's linear
    column-major, so both of its gradient products under double backprop (the forward's and the
    inner gradient's) are (out, in) products, gᵀ @ x; the loss, and its gradients, equal plain
    addmm's (float64, 1e-12). Control: plain addmm makes (in, out) products; a narrow weight takes
    the plain path; without grad the values equal addmm's."""
    from lieconv_torch.adapter import ADAPTER
    from torch.utils._python_dispatch import TorchDispatchMode

    class Products(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.shapes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
                self.shapes.append(tuple(out.shape))
            return out

    n, i, o = 10, 64, 4
    x = torch.randn(n, i, generator=_gen(5), dtype=torch.float64, requires_grad=True)
    w = torch.randn(i, o, generator=_gen(6), dtype=torch.float64, requires_grad=True)
    b = torch.randn(o, generator=_gen(7), dtype=torch.float64, requires_grad=True)

    def run(linear):
        y = torch.tanh(linear(w, b, x))
        (gx,) = torch.autograd.grad(torch.sum(y ** 3), x, create_graph=True)
        loss = torch.sum(gx * gx) + torch.sum(y)
        with Products() as rec:
            grads = torch.autograd.grad(loss, (x, w, b))
        return (loss, *grads), rec.shapes

    got, got_shapes = run(ADAPTER.linear)
    want, want_shapes = run(lambda w, b, x: torch.addmm(b, x, w))
    for g, v in zip(got, want):
        torch.testing.assert_close(g, v, rtol=1e-12, atol=1e-12)
    assert got_shapes.count((o, i)) == 2 and (i, o) not in got_shapes
    assert want_shapes.count((i, o)) == 2 and (o, i) not in want_shapes  # control
    narrow = torch.randn(i, 16, dtype=torch.float64, requires_grad=True)
    assert ADAPTER.linear(narrow, torch.zeros(16, dtype=torch.float64), x).grad_fn.name() \
        == "AddmmBackward0"
    with torch.no_grad():
        torch.testing.assert_close(ADAPTER.linear(w, b, x), torch.addmm(b, x, w),
                                   rtol=1e-13, atol=1e-13)


def test_swish_derivatives_of_every_order(torch1):
    """_Swish = silu in value; its gradient op _SwishGrad has exact first, second and third
    derivatives (gradcheck / gradgradcheck of both ops, float64), and a double-backprop loss gives
    autograd's numbers for silu to 1e-12; control: a swish'' off by 1% fails the comparison."""
    from lieconv_torch.adapter import _Swish, _SwishGrad

    x = torch.randn(6, 7, generator=_gen(3), dtype=torch.float64) * 3
    x.requires_grad_()
    g = torch.randn(6, 7, generator=_gen(4), dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_Swish.apply(x), torch.nn.functional.silu(x), rtol=1e-14,
                               atol=1e-14)
    assert torch.autograd.gradcheck(_Swish.apply, (x,))
    assert torch.autograd.gradgradcheck(_Swish.apply, (x,))
    assert torch.autograd.gradcheck(_SwishGrad.apply, (g, x))
    assert torch.autograd.gradgradcheck(_SwishGrad.apply, (g, x))

    def loss(act):
        (gx,) = torch.autograd.grad(torch.sum(act(x) ** 2), x, create_graph=True)
        return torch.sum(torch.sin(gx))

    want = torch.autograd.grad(loss(torch.nn.functional.silu), x)[0]
    got = torch.autograd.grad(loss(_Swish.apply), x)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    class _Off(_SwishGrad):  # control: swish'' scaled by 1.01
        @staticmethod
        def backward(ctx, gg):
            dg, dx = _SwishGrad.backward(ctx, gg)
            return dg, dx * 1.01

    class _OffSwish(_Swish):
        @staticmethod
        def backward(ctx, gout):
            (xx,) = ctx.saved_tensors
            return _Off.apply(gout, xx)

    off = torch.autograd.grad(loss(_OffSwish.apply), x)[0]
    assert torch.max(torch.abs(off - want)) > 1e-4
