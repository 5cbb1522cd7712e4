"""Models vs PyTorch eager: runs the Rust model benchmark (stages/examples/bench_models.rs)
and the same workloads on the reference modules in PyTorch eager, with the same thread
count, and prints a Markdown table (optionally written into BENCHMARKS.md under
"## Models vs PyTorch eager").

Usage: python benches/models_vs_pytorch.py --rust-bin target/release/examples/bench_models
           [--threads 1] [--iters 5] [--write BENCHMARKS.md]
Workloads (names shared with the Rust binary):
  vit_tiny_train_step_b8   timm VisionTransformer(32², patch 8, D 64, depth 2, 2 heads), batch 8,
                           forward + cross-entropy + backward + AdamW step
  vit_s16_train_step_b2    timm vit_small_patch16_224, batch 2, same step
  ae_tiny_train_step_b4    LDM AutoencoderKL (tests/fixtures/ref_autoencoder.py, TINY config: 32², ch 32,
                           ch_mult [1, 2]), batch 4: L1(decode(sample), x) + 1e-6·KL, backward, AdamW
  unet_tiny_train_step_b4  openaimodel UNet (tests/fixtures/gen_unet.py TINY_A: 32 ch, mult (1,2,2),
                           attention at ds 2, 4, scale-shift) on 3×32×32, batch 4: t ~ U{0..999},
                           z_t = √ᾱ z0 + √(1−ᾱ) ε, L2 ε-loss, backward, AdamW
  ddim_tiny_step_b4        the same UNet, one step of a 50-step DDIM run (η = 0), batch 4
                           (time per step; steps/s = 1000 / ms)
  fid_inception_pool3_b2   pytorch-fid InceptionV3 pool3 (random weights), batch 2 of 64² images
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))


def timed(iters, fn):
    fn()
    samples = []
    for _ in range(max(iters, 1)):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2]


def vit_step(model, batch, size, iters):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 9, (batch,))
    model.train()

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return timed(iters, step)


def pytorch_benches():
    import timm
    from timm.models.vision_transformer import VisionTransformer
    from gen_inception import build_random

    def inception(iters):
        model, _ = build_random()
        model.eval()
        x = torch.rand(2, 3, 64, 64)
        with torch.no_grad():
            return timed(iters, lambda: model(x))

    def autoencoder(iters):
        from gen_autoencoder import EMBED_DIM, TINY
        from ref_autoencoder import AutoencoderKL
        ae = AutoencoderKL(TINY, EMBED_DIM)
        ae.train()
        opt = torch.optim.AdamW(ae.parameters(), lr=4.5e-6, weight_decay=0.01)
        x = torch.randn(4, 3, 32, 32)

        def step():
            opt.zero_grad()
            posterior = ae.encode(x)
            rec = ae.decode(posterior.sample(torch.randn_like(posterior.mean)))
            loss = (rec - x).abs().mean() + posterior.kl().mean() * 1e-6
            loss.backward()
            opt.step()
        return timed(iters, step)

    def alphas_cumprod():
        betas = torch.linspace(0.0015 ** 0.5, 0.0155 ** 0.5, 1000, dtype=torch.float64) ** 2
        return torch.cumprod(1.0 - betas, 0).float()

    def tiny_unet():
        from gen_unet import TINY_A, UNetModel
        return UNetModel(3, **TINY_A)

    def unet_step(iters):
        unet = tiny_unet()
        unet.train()
        opt = torch.optim.AdamW(unet.parameters(), lr=5e-5, weight_decay=0.01)
        ac = alphas_cumprod()
        z0 = torch.randn(4, 3, 32, 32)

        def step():
            t = torch.randint(0, 1000, (4,))
            eps = torch.randn_like(z0)
            a = ac[t].reshape(4, 1, 1, 1)
            zt = z0 * a.sqrt() + eps * (1.0 - a).sqrt()
            opt.zero_grad()
            ((unet(zt, t) - eps) ** 2).mean().backward()
            opt.step()
        return timed(iters, step)

    def ddim_step(iters, steps=50):
        unet = tiny_unet()
        unet.eval()
        ac = alphas_cumprod().double()
        tau = list(range(0, 1000, 1000 // steps))
        tau = [t + 1 for t in tau]
        a = [float(ac[t]) for t in tau]
        a_prev = [float(ac[0])] + a[:-1]
        x_t = torch.randn(4, 3, 32, 32)

        def run():
            x = x_t
            for i in reversed(range(steps)):
                t = torch.full((4,), tau[i], dtype=torch.int64)
                eps = unet(x, t)
                x0 = (x - (1 - a[i]) ** 0.5 * eps) / a[i] ** 0.5
                x = a_prev[i] ** 0.5 * x0 + (1 - a_prev[i]) ** 0.5 * eps
            return x
        with torch.no_grad():
            return timed(iters, run) / steps

    return {
        "ae_tiny_train_step_b4": autoencoder,
        "unet_tiny_train_step_b4": unet_step,
        "ddim_tiny_step_b4": ddim_step,
        "vit_tiny_train_step_b8": lambda n: vit_step(VisionTransformer(
            img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=9), 8, 32, n),
        "vit_s16_train_step_b2": lambda n: vit_step(timm.create_model(
            "vit_small_patch16_224", pretrained=False, num_classes=9), 2, 224, n),
        "fid_inception_pool3_b2": inception,
    }


def rust_time(binary, name, threads, iters):
    """Median seconds of one workload in the Rust binary (run per workload, right next to
    the PyTorch run of the same workload, so both see the same machine load)."""
    out = subprocess.run([binary, "--threads", str(threads), "--iters", str(iters), "--only", name],
                         check=True, capture_output=True, text=True).stdout
    results = [json.loads(line) for line in out.strip().splitlines()]
    return results[0]["median_s"] if results else None


def table(rows, threads, iters, binary, rounds):
    lines = [
        "## Models vs PyTorch eager",
        "",
        f"CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"{threads} thread(s); each workload alternates Rust and PyTorch for {rounds} rounds of "
        f"{iters} timed runs (after one warm-up); times are medians over rounds, the ratio is the "
        "median of the per-round ratios (range in brackets); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end; "
        "ratio = Rust (tch) time / PyTorch eager time (below 1: Rust faster). "
        f"Rust binary `{os.path.relpath(binary)}` (`cargo build -p histodiff-stages --example bench_models`; "
        "the dev profile builds dependencies at opt-level 2 and the work is in libtorch). "
        "Generated by `benches/models_vs_pytorch.py`.",
        "",
        "| workload | Rust tch (ms) | PyTorch eager (ms) | ratio [range] |",
        "|---|---:|---:|---:|",
    ]
    for name, rust, torch_s, ratio, low, high in rows:
        lines.append(f"| {name} | {rust * 1e3:.1f} | {torch_s * 1e3:.1f} | {ratio:.2f} [{low:.2f}–{high:.2f}] |")
    return "\n".join(lines) + "\n"


def write_section(path, section):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    pattern = re.compile(r"## Models vs PyTorch eager\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n"), text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rust-bin", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating Rust/PyTorch rounds per workload (the ratio is the median "
                             "of the per-round ratios, so load changes between rounds cancel)")
    parser.add_argument("--write", help="Markdown file to put the table into")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, bench in pytorch_benches().items():
        pairs = []
        for _ in range(args.rounds):
            rust = rust_time(args.rust_bin, name, args.threads, args.iters)
            if rust is None:
                break
            pairs.append((rust, bench(args.iters)))
            print(f"{name}: rust {rust:.4f}s, pytorch {pairs[-1][1]:.4f}s", file=sys.stderr)
        if pairs:
            ratios = [r / p for r, p in pairs]
            rows.append((name, statistics.median(r for r, _ in pairs), statistics.median(p for _, p in pairs),
                         statistics.median(ratios), min(ratios), max(ratios)))
    section = table(rows, args.threads, args.iters, args.rust_bin, args.rounds)
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
