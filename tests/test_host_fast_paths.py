"""Host fast paths of :mod:`lieconv_core._numpy_fast` against the portable array-API reference
(array_api_strict, which takes none of them): the contraction without autograd (neighbour values
gathered in cache-sized blocks; numpy and CPU torch) for every block split, layout, index dtype
and mask, with torch keeping the reference path wherever autograd needs the gathered values; and
numpy's in-place weight net, bit for bit; torch's kNN selection by topk of distinct keys."""

from __future__ import annotations

import numpy as np
import pytest


def _case(seed=0, bs=2, m=37, n=11, k=5, c=7, cm=3, idx_dtype="int64"):
    g = np.random.default_rng(seed)
    return (g.standard_normal((bs, m, k, cm)), g.standard_normal((bs, n, c)),
            g.integers(0, n, (bs, m, k)).astype(idx_dtype), g.uniform(size=(bs, m, k)) < 0.7)


def _spec(name):
    """(adapter, xp, asarray, module whose blocked_contract the adapter calls)."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        import lieconv_core._numpy_fast as nf
        from lieconv_core.numpy_adapter import NumpyAdapter

        return NumpyAdapter(), xp, np.asarray, nf
    torch = pytest.importorskip("torch")
    import lieconv_torch.adapter as ta

    return ta.ADAPTER, ta.xp_torch(), torch.asarray, ta


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("block_bytes", [1, 3 * 5 * 7 * 8, 1 << 20])  # 1 query, 3, all per block
@pytest.mark.parametrize("weight_major", [False, True])
@pytest.mark.parametrize("idx_dtype", ["int32", "int64"])
def test_blocked_contract_gives_the_reference_numbers(monkeypatch, backend, block_bytes,
                                                      weight_major, idx_dtype):
    import array_api_strict as strict

    import lieconv_core._numpy_fast as nf
    from lieconv_core.adapter import ReferenceAdapter

    ad, xp, asarray, mod = _spec(backend)
    monkeypatch.setattr(nf, "CONTRACT_BLOCK_BYTES", block_bytes)
    calls = []
    blocked = mod.blocked_contract
    monkeypatch.setattr(mod, "blocked_contract", lambda *a: calls.append(1) or blocked(*a))
    w, values, idx, mask = _case(idx_dtype=idx_dtype)
    for m in (mask, None):
        got = ad.contract(xp, asarray(w), asarray(values), asarray(idx),
                          None if m is None else asarray(m), weight_major=weight_major)
        # the portable reference: array_api_strict has no fast path
        want = ReferenceAdapter().contract(
            strict, strict.asarray(w), strict.asarray(values), strict.asarray(idx),
            None if m is None else strict.asarray(m), weight_major=weight_major)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-13, atol=1e-13)
    assert len(calls) == 2
    # control: the other cloud's values (indices taken in the wrong cloud) change the result
    swapped = ad.contract(xp, asarray(w), asarray(values[::-1].copy()), asarray(idx),
                          asarray(mask), weight_major=weight_major)
    assert not np.allclose(np.asarray(swapped), np.asarray(want))


@pytest.mark.parametrize("block_bytes", [1, 3 * 5 * 7 * 8, 1 << 20])
@pytest.mark.parametrize("weight_major", [False, True])
@pytest.mark.parametrize("idx_dtype", ["int32", "int64"])
def test_torch_contract_gradients_are_the_reference_gradients(torch1, monkeypatch, block_bytes,
                                                              weight_major, idx_dtype):
    """Under autograd the torch adapter's contraction is one autograd op (_BlockedContract) with
    blocked gradients: the reference's values and gradients (first order, 1e-13), derivatives of
    every order (gradcheck, gradgradcheck through its create_graph formulas), and a loss built
    from a gradient (double backprop, as the Hamiltonian models do) equal to the reference's."""
    import lieconv_torch.adapter as ta
    import torch

    import lieconv_core._numpy_fast as nf
    from lieconv_core.adapter import ReferenceAdapter
    from lieconv_core.rows import offset_rows

    monkeypatch.setattr(nf, "CONTRACT_BLOCK_BYTES", block_bytes)
    xp = ta.xp_torch()
    w, values, idx, mask = (torch.asarray(a) for a in _case(seed=1, idx_dtype=idx_dtype))
    ref = ReferenceAdapter()

    def run(ad, order):
        wg, vg = w.clone().requires_grad_(True), values.clone().requires_grad_(True)
        out = ad.contract(xp, wg, vg, idx, mask, weight_major=weight_major)
        y = torch.sum(torch.sin(out))
        if order == 1:
            return (out, *torch.autograd.grad(y, (wg, vg)))
        gw, gv = torch.autograd.grad(y, (wg, vg), create_graph=True)
        return torch.autograd.grad(torch.sum(gw ** 2) + torch.sum(torch.cos(gv)), (wg, vg))

    for order in (1, 2):
        torch.testing.assert_close(run(ta.ADAPTER, order), run(ref, order), rtol=1e-13,
                                   atol=1e-13)
    # the op itself on (rows, k, cm) weights, (bs·n, c) values and offset rows
    sw, sv, sidx, _ = (torch.asarray(a) for a in _case(seed=2, bs=2, m=3, n=4, k=3, c=2, cm=2))
    flat = torch.reshape(offset_rows(ta.xp_torch(), sidx, 4), (6, 3))
    f = lambda w_, v_: ta._BlockedContract.apply(w_, v_, flat, weight_major)  # noqa: E731
    args = (torch.reshape(sw, (6, 3, 2)).requires_grad_(True),
            torch.reshape(sv, (8, 2)).requires_grad_(True))
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_torch_contract_does_not_save_the_gathered_values(torch1):
    """What autograd keeps for the backward (saved-tensor hooks): w, values and the indices,
    not the (bs, m, k, c) gathered values the reference's gather saves."""
    import lieconv_torch.adapter as ta
    import torch

    from lieconv_core.adapter import ReferenceAdapter

    xp = ta.xp_torch()
    w, values, idx, _ = (torch.asarray(a) for a in _case(seed=3, m=40, k=8, c=32, cm=4))
    saved = {}
    for name, ad in (("blocked", ta.ADAPTER), ("reference", ReferenceAdapter())):
        sizes = []

        def pack(t, sizes=sizes):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ad.contract(xp, w.clone().requires_grad_(True), values.clone().requires_grad_(True),
                        idx, None)
        saved[name] = sum(sizes)
    gathered = idx.numel() * values.shape[-1]
    assert saved["blocked"] <= w.numel() + values.numel() + idx.numel()
    assert saved["reference"] >= gathered  # control: the reference keeps them


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_weightnet_is_the_reference_bit_for_bit(dtype):
    import array_api_compat.numpy as xp
    import array_api_strict as strict

    from lieconv_core.adapter import ReferenceAdapter

    g = np.random.default_rng(5)
    widths = [4, 32, 32, 16]
    layers = [(g.standard_normal((a, b)).astype(dtype), g.standard_normal(b).astype(dtype))
              for a, b in zip(widths[:-1], widths[1:])]
    emb = (3 * g.standard_normal((2, 7, 5, 4))).astype(dtype)
    before = emb.copy()
    got = ReferenceAdapter().weightnet(xp, layers, emb)
    want = ReferenceAdapter().weightnet(
        strict, [(strict.asarray(w), strict.asarray(b)) for w, b in layers], strict.asarray(emb))
    np.testing.assert_array_equal(got, np.asarray(want))
    np.testing.assert_array_equal(emb, before)  # the input is not overwritten
    # control: another bias in the last layer changes the output
    layers[-1] = (layers[-1][0], layers[-1][1] + 1)
    assert not np.allclose(ReferenceAdapter().weightnet(xp, layers, emb), got)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("m", [0, 1])
def test_blocked_contract_edge_sizes(backend, m):
    """No queries, or one: the reference's shapes and values (no reshape of an empty array with
    an inferred axis), and gradients of the right shape under torch's autograd."""
    import array_api_strict as strict

    from lieconv_core.adapter import ReferenceAdapter

    ad, xp, asarray, _ = _spec(backend)
    w, values, idx, _ = _case(m=m)
    got = ad.contract(xp, asarray(w), asarray(values), asarray(idx), None)
    want = ReferenceAdapter().contract(strict, strict.asarray(w), strict.asarray(values),
                                       strict.asarray(idx), None)
    assert tuple(got.shape) == tuple(want.shape) == (2, m, 7 * 3)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-13, atol=1e-13)
    if backend == "torch":
        import torch

        wg, vg = asarray(w).requires_grad_(True), asarray(values).requires_grad_(True)
        torch.sum(ad.contract(xp, wg, vg, asarray(idx), None)).backward()
        assert wg.grad.shape == wg.shape and vg.grad.shape == vg.shape


@pytest.mark.parametrize("shape,k", [((3, 300), 7), ((2, 4, 1000), 32), ((2, 256), 256)])
def test_torch_topk_smallest_keys_match_stable_sort(shape, k):
    """TorchAdapter.topk_smallest on CPU float32 rows of >= 256 scores (topk of distinct int64
    keys: order-preserving bits times 2^32 plus the index) = the stable sort, index for index:
    heavy ties, +inf, negative scores, and 0.0 next to -0.0."""
    torch = pytest.importorskip("torch")
    import lieconv_torch.adapter as ta

    rng = np.random.default_rng(shape[-1] + k)
    s = (np.round(rng.standard_normal(shape) * 4) / 4).astype(np.float32)  # ties, negatives
    s[..., ::5] = np.inf
    s[..., 1::7] = 0.0
    s[..., 3::7] = -0.0
    want = np.argsort(s, axis=-1, kind="stable")[..., :k]
    got = ta.TorchAdapter().topk_smallest(None, torch.from_numpy(s), k).numpy()
    np.testing.assert_array_equal(got, want)
    # control: the keys are what makes topk's ties canonical — topk of the raw scores is not
    # the stable order here
    raw = torch.topk(torch.from_numpy(s), k, dim=-1, largest=False, sorted=True).indices
    assert (raw.numpy() != want).any()
