"""How often the `ocr` captcha solver reads the simulator's captchas right, and how long it takes.

    python bench/captcha_accuracy.py [--count 200] [--seed 1] [--renderer FILE] [--save-misses DIR]

Renders `count` captchas with `daemon.sim.render_captcha` (half PNG, half JPEG, seeded), solves
them one after another with the solver `make_solver` builds for `captcha.solver: ocr`, and prints
accuracy and solve times. The first solve also loads the model; it is reported apart. A miss is listed
with what the model read, so the renderer can be tuned. `--renderer` loads `render_captcha` from
another file, to try a renderer variant without installing it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.account import CaptchaUnsolved, make_solver  # noqa: E402
from daemon.clock import SystemClock  # noqa: E402
from daemon.config import CaptchaSettings  # noqa: E402

Renderer = Callable[[str, str, random.Random], bytes]


def load_renderer(path: str | None) -> Renderer:
    if path is None:
        from daemon.sim import render_captcha

        return render_captcha
    spec = importlib.util.spec_from_file_location("captcha_image_variant", path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_captcha


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(count: int, seed: int, render: Renderer, save_misses: Path | None) -> int:
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(5))
        fmt = "png" if i % 2 == 0 else "jpeg"
        cases.append((digits, fmt, render(digits, fmt, rng)))

    clock = SystemClock()
    solver = make_solver(CaptchaSettings(solver="ocr", timeout_s=60))
    times_ms: list[float] = []
    misses: list[tuple[str, str, str, bytes]] = []
    right = Counter[str]()
    for digits, fmt, image in cases:
        start = clock.monotonic_ns()
        try:
            answer = await solver.solve(image)
        except CaptchaUnsolved as exc:
            answer = f"<{exc}>"
        times_ms.append((clock.monotonic_ns() - start) / 1e6)
        if answer == digits:
            right[fmt] += 1
        else:
            misses.append((digits, fmt, answer, image))
    await solver.aclose()

    first, rest = times_ms[0], times_ms[1:] or times_ms
    per_format = ", ".join(
        f"{fmt} {right[fmt]}/{count // 2 + (count % 2 if fmt == 'png' else 0)}" for fmt in ("png", "jpeg")
    )
    print(
        f"captchas: {count} (seed {seed}); sizes {min(len(c[2]) for c in cases)}-{max(len(c[2]) for c in cases)} bytes"
    )
    print(f"accuracy: {sum(right.values())}/{count} = {100 * sum(right.values()) / count:.1f}% ({per_format})")
    print(f"first solve (loads the model): {first:.0f} ms")
    print(
        f"solve time after it: mean {statistics.fmean(rest):.1f} ms, p50 {percentile(rest, 0.5):.1f} ms, "
        f"p95 {percentile(rest, 0.95):.1f} ms, max {max(rest):.1f} ms"
    )
    if misses:
        print_misses(misses, save_misses)
    return 0


def print_misses(misses: list[tuple[str, str, str, bytes]], save: Path | None) -> None:
    """Each miss with the model's raw reading, and which digits it confuses, to tune the renderer by."""
    import ddddocr

    raw_model = ddddocr.DdddOcr(show_ad=False)
    confusions = Counter[str]()
    print(f"misses ({len(misses)}): expected -> raw reading [format]")
    for n, (digits, fmt, _answer, image) in enumerate(misses):
        raw = raw_model.classification(image)
        print(f"  {digits} -> {raw!r} [{fmt}]")
        if len(raw) == len(digits):
            confusions.update(f"{a}->{b}" for a, b in zip(digits, raw) if a != b)
        else:
            confusions["wrong length"] += 1
        if save:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"{n:03d}-{digits}.{fmt}").write_bytes(image)
    print("confusions: " + ", ".join(f"{k} x{v}" for k, v in confusions.most_common()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--renderer", help="a file defining render_captcha(digits, fmt, rng) -> bytes")
    parser.add_argument("--save-misses", type=Path, help="write the misread images here")
    args = parser.parse_args()
    return asyncio.run(run(args.count, args.seed, load_renderer(args.renderer), args.save_misses))


if __name__ == "__main__":
    sys.exit(main())
