"""Time torch's CPU batched products of the springs model's dense LieConv (200 systems, 6 points,
16 weight-net channels, 96 channels) in both result layouts: a @ b directly, and (bᵀ aᵀ)ᵀ, whose
result is contiguous along M instead of N. The operands come contiguous (C) or as transposed views
(T), the strides autograd hands the products in a backward pass.

    python scripts/matmul_layouts.py [--repeat 25]

Prints one line per shape: for each operand layout, "direct / transposed" medians in ms. This is
the measurement behind ``lieconv_torch.adapter._matmul_wide_rows``.
"""

from __future__ import annotations

import argparse
import time

import torch


def _median_ms(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2] * 1e3


def _operand(shape: tuple, transposed: bool) -> torch.Tensor:
    if not transposed:
        return torch.randn(shape)
    return torch.randn(*shape[:-2], shape[-1], shape[-2]).mT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(0)
    shapes = [((200, 96, 6), (200, 6, 96)), ((200, 96, 96), (200, 96, 6)),
              ((200, 6, 96), (200, 96, 96))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for sa, sb in shapes:
        cells = []
        for ta in (False, True):
            for tb in (False, True):
                a, b = _operand(sa, ta), _operand(sb, tb)
                direct = _median_ms(lambda a=a, b=b: torch.matmul(a, b), args.repeat)
                flipped = _median_ms(lambda a=a, b=b: torch.matmul(b.mT, a.mT).mT, args.repeat)
                cells.append(f"a{'T' if ta else 'C'}b{'T' if tb else 'C'} "
                             f"{direct:5.2f} / {flipped:5.2f}")
        print(f"{sa} @ {sb}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
