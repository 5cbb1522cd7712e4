"""Models vs PyTorch eager: runs the Rust model benchmark (stages/examples/bench_models.rs)
and the same workloads on the reference modules in PyTorch eager, on the same device, in
the same precision and with the same thread count, and prints a Markdown table (optionally
written into BENCHMARKS.md under "## Models vs PyTorch eager", with the size, device and
precision appended to the title when they are not the CPU defaults).

Usage: python benches/models_vs_pytorch.py --rust-bin target/release/examples/bench_models
           [--size tiny|paper] [--device cpu|cuda|cuda:N] [--precision f32|bf16|fp16]
           [--batch B] [--channels-last auto|on|off] [--only NAME ...]
           [--threads 1] [--iters 3] [--rounds 3] [--write BENCHMARKS.md]
           [--stylegan2-ada PATH [--stylegan2-plugins]]
Mixed precision is torch.autocast on both sides (libtorch autocast in Rust, see
stages/src/train/autocast.rs), with loss scaling for fp16 training (torch.amp.GradScaler /
LossScaler); channels_last (auto: on for CUDA) applies to the conv models on both sides.

Workloads of --size tiny (the default; names shared with the Rust binary):
  vit_tiny_train_step_b8   timm VisionTransformer(32², patch 8, D 64, depth 2, 2 heads), batch 8,
                           forward + cross-entropy + backward + AdamW step
  vit_s16_train_step_b2    timm vit_small_patch16_224, batch 2, same step
  ae_tiny_train_step_b4    LDM AutoencoderKL (tests/fixtures/ref_autoencoder.py, TINY config: 32², ch 32,
                           ch_mult [1, 2]), batch 4: Σ|decode(sample) − x|/B + 1e-6·KL/B, backward, Adam
  unet_tiny_train_step_b4  openaimodel UNet (tests/fixtures/gen_unet.py TINY_A: 32 ch, mult (1,2,2),
                           attention at ds 2, 4, scale-shift) on 3×32×32, batch 4: t ~ U{0..999},
                           z_t = √ᾱ z0 + √(1−ᾱ) ε, L2 ε-loss, backward, AdamW
  ddim_tiny_step_b4        the same UNet, one step of a 50-step DDIM run (η = 0), batch 4
                           (time per step)
  fid_inception_pool3_b2   pytorch-fid InceptionV3 pool3 (random weights), batch 2 of 64² images
  stylegan2_tiny_train_step_b8
                           the OFFICIAL NVlabs/stylegan2-ada-pytorch networks and loss, imported from
                           --stylegan2-ada PATH (not part of this repository): Generator(z 64, c 9, w 64,
                           32², mapping 2 layers, channel_base 1024, channel_max 64, conv_clamp 256, no
                           fp16) and Discriminator(c 9, 32², resnet, same channels, mbstd group 4), batch 8;
                           one timed run = one training_loop.py iteration at batch_idx 0, i.e. all four
                           phases Gmain, Greg, Dmain, Dreg (StyleGAN2Loss: style mixing 0.9, r1_gamma 0.0128,
                           pl_weight 2, pl_batch_shrink 2; G noise_mode 'random'; Adam(0.002·r, betas (0,
                           0.99)^r, eps 1e-8), r = I/(I+1) with reg intervals 4 (G) and 16 (D), gain I for the
                           reg phases; nan_to_num of the gradients) plus the G_ema update; fresh z and labels
                           drawn in each run. f32 only (the official blocks assert their activation dtype, so
                           autocast cannot run them; skipped with a note for other precisions), no
                           channels_last. bias_act/upfirdn2d run their pure-PyTorch reference paths (eager),
                           also on CUDA, unless --stylegan2-plugins lets them build the official CUDA
                           kernels; conv2d_gradfix stays off (on torch >= 1.10 the official code falls back
                           to torch conv2d anyway); training_stats.report calls of the loss are kept. Without
                           --stylegan2-ada the workload is skipped with a note (an error when named in --only).
Workloads of --size paper (the paper's models and batch sizes, SPEC Appendix A; --batch overrides):
  ae_kl_f4_train_step_b6       kl-f4 AutoencoderKL (PAPER config) on 256² images, the tiny step's loss,
                               Adam(4.5e-6, betas 0.5/0.9)
  unet_paper_train_step_b4     official UNet (gen_unet.py OFFICIAL_UNET, 295 M) on 3×64² latents, AdamW(5e-5)
  phi_paper_train_step_b32     latent classifier ϕ (gen_unet.py CLASSIFIER, 64² latents, 9 classes),
                               cross-entropy on noised latents at random t, AdamW(5e-5, wd 0.05)
  vit_b16_train_step_b128      timm vit_base_patch16_224 (9 classes), AdamW(1e-4, wd 0.05)
  ddim_guided_paper_step_b10   one classifier-guided DDIM step (UNet ε, ∇ log p_ϕ(y|z_t) by autograd,
                               ε − √(1−ᾱ)·∇, η = 1), timed over the first 5 steps of a 200-step run;
                               images/s is for a whole 200-step sampling run (decoding excluded)
images/s = batch / time of one step (training) or batch / (200 × time of one step) (sampling).
"""
import argparse
import copy
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))

DDIM_STEPS = 200
SG2_NAME = "stylegan2_tiny_train_step_b8"
SG2_BATCH = 8
SG2_G = dict(z_dim=64, c_dim=9, w_dim=64, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
             synthesis_kwargs=dict(channel_base=1024, channel_max=64, conv_clamp=256, num_fp16_res=0))
SG2_D = dict(c_dim=9, img_resolution=32, img_channels=3, architecture="resnet", channel_base=1024, channel_max=64,
             conv_clamp=256, num_fp16_res=0, epilogue_kwargs=dict(mbstd_group_size=4))
SG2_LOSS = dict(style_mixing_prob=0.9, r1_gamma=0.0128, pl_batch_shrink=2, pl_decay=0.01, pl_weight=2.0)
SG2_REG_INTERVAL = dict(G=4, D=16)
SG2_EMA_KIMG = 10.0
DDIM_STEPS_TIMED = 5
PAPER_BATCH = dict(ae=6, dm=4, phi=32, vit=128, ddim=10)


class Run:
    """Device, precision and layout of one benchmark run, and the timing helpers."""

    def __init__(self, device, precision, channels_last, iters):
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = {"f32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.channels_last = channels_last
        self.iters = iters

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn):
        """Median wall time of `iters` runs after one warm-up run (device work included)."""
        fn()
        self.sync()
        samples = []
        for _ in range(max(self.iters, 1)):
            start = time.perf_counter()
            fn()
            self.sync()
            samples.append(time.perf_counter() - start)
        return sorted(samples)[len(samples) // 2]

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)

    def model(self, module, conv=False):
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if conv and self.channels_last else module

    def randn(self, *shape, conv=False):
        x = torch.randn(*shape, device=self.device)
        return x.to(memory_format=torch.channels_last) if conv and self.channels_last else x

    def train_step(self, module, opt, loss_fn):
        """Times zero_grad, loss under autocast, backward (scaled in fp16), optimizer step."""
        module.train()
        scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

        def step():
            opt.zero_grad()
            with self.autocast():
                loss = loss_fn()
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        return self.timed(step)


def alphas_cumprod(device):
    betas = torch.linspace(0.0015 ** 0.5, 0.0155 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float().to(device)


def noised(ac, z0):
    b = z0.shape[0]
    t = torch.randint(0, 1000, (b,), device=z0.device)
    eps = torch.randn_like(z0)
    a = ac[t].reshape(b, 1, 1, 1)
    return z0 * a.sqrt() + eps * (1.0 - a).sqrt(), t, eps


def vit_step(run, model, batch, size):
    model = run.model(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = run.randn(batch, 3, size, size)
    y = torch.randint(0, 9, (batch,), device=run.device)
    return run.train_step(model, opt, lambda: F.cross_entropy(model(x), y))


def ae_step(run, config, batch):
    from gen_autoencoder import EMBED_DIM
    from ref_autoencoder import AutoencoderKL
    ae = run.model(AutoencoderKL(config, EMBED_DIM), conv=True)
    opt = torch.optim.Adam(ae.parameters(), lr=4.5e-6, betas=(0.5, 0.9))
    size = config["resolution"]
    x = run.randn(batch, 3, size, size, conv=True)

    def loss():
        posterior = ae.encode(x)
        rec = ae.decode(posterior.sample(torch.randn_like(posterior.mean)))
        return (rec - x).abs().sum() / batch + posterior.kl().sum() * (1e-6 / batch)
    return run.train_step(ae, opt, loss)


def unet_step(run, config, size, batch):
    from gen_unet import UNetModel
    unet = run.model(UNetModel(3, **config), conv=True)
    opt = torch.optim.AdamW(unet.parameters(), lr=5e-5, weight_decay=0.01)
    ac = alphas_cumprod(run.device)
    z0 = run.randn(batch, 3, size, size, conv=True)

    def loss():
        zt, t, eps = noised(ac, z0)
        return ((unet(zt, t) - eps) ** 2).mean()
    return run.train_step(unet, opt, loss)


def phi_step(run, batch):
    from gen_unet import CLASSIFIER, EncoderUNetModel
    phi = run.model(EncoderUNetModel(64, 9, 64, **CLASSIFIER), conv=True)
    opt = torch.optim.AdamW(phi.parameters(), lr=5e-5, weight_decay=0.05)
    ac = alphas_cumprod(run.device)
    z0 = run.randn(batch, 3, 64, 64, conv=True)
    y = torch.randint(0, 9, (batch,), device=run.device)

    def loss():
        zt, t, _ = noised(ac, z0)
        return F.cross_entropy(phi(zt, t), y)
    return run.train_step(phi, opt, loss)


def ddim_table(steps, eta):
    """LDM's uniform DDIM table (τ_i = i·c + 1, a_prev_0 = ᾱ_0) as Python floats."""
    ac = alphas_cumprod("cpu").double()
    tau = [i * (1000 // steps) + 1 for i in range(steps)]
    a = [float(ac[t]) for t in tau]
    a_prev = [float(ac[0])] + a[:-1]
    sigma = [eta * math.sqrt((1 - ap) / (1 - at) * (1 - at / ap)) for at, ap in zip(a, a_prev)]
    return tau, a, a_prev, sigma


def ddim_tiny_step(run, batch, steps=50):
    from gen_unet import TINY_A, UNetModel
    unet = run.model(UNetModel(3, **TINY_A), conv=True).eval()
    tau, a, a_prev, _ = ddim_table(steps, 0.0)
    x_t = run.randn(batch, 3, 32, 32, conv=True)

    def sample():
        x = x_t
        with torch.no_grad(), run.autocast():
            for i in reversed(range(steps)):
                t = torch.full((batch,), tau[i], dtype=torch.int64, device=run.device)
                eps = unet(x, t)
                x0 = (x - (1 - a[i]) ** 0.5 * eps) / a[i] ** 0.5
                x = a_prev[i] ** 0.5 * x0 + (1 - a_prev[i]) ** 0.5 * eps
        return x
    return run.timed(sample) / steps


def ddim_guided_step(run, batch):
    """The sample stage's loop at paper size: ε_θ, ∇ log p_ϕ(y|z_t), condition_score, η = 1."""
    from gen_unet import CLASSIFIER, OFFICIAL_UNET, EncoderUNetModel, UNetModel
    unet = run.model(UNetModel(3, **OFFICIAL_UNET), conv=True).eval()
    phi = run.model(EncoderUNetModel(64, 9, 64, **CLASSIFIER), conv=True).eval()
    tau, a, a_prev, sigma = ddim_table(DDIM_STEPS, 1.0)
    steps = list(reversed(range(DDIM_STEPS)))[:DDIM_STEPS_TIMED]
    x_t = run.randn(batch, 3, 64, 64, conv=True)
    y = torch.randint(0, 9, (batch,), device=run.device)

    def sample():
        x = x_t
        with run.autocast():
            for i in steps:
                t = torch.full((batch,), tau[i], dtype=torch.int64, device=run.device)
                with torch.no_grad():
                    eps = unet(x, t)
                with torch.enable_grad():
                    x_in = x.detach().requires_grad_(True)
                    log_probs = F.log_softmax(phi(x_in, t).float(), dim=-1)
                    grad = torch.autograd.grad(log_probs[torch.arange(batch, device=run.device), y].sum(), x_in)[0]
                with torch.no_grad():
                    eps = eps - (1 - a[i]) ** 0.5 * grad
                    x0 = (x - (1 - a[i]) ** 0.5 * eps) / a[i] ** 0.5
                    direction = max(1 - a_prev[i] - sigma[i] ** 2, 0.0) ** 0.5 * eps
                    x = a_prev[i] ** 0.5 * x0 + direction + sigma[i] * torch.randn_like(x)
        return x
    return run.timed(sample) / DDIM_STEPS_TIMED


def inception(run, batch):
    from gen_inception import build_random
    model, _ = build_random()
    model = run.model(model).eval()
    x = torch.rand(batch, 3, 64, 64, device=run.device)

    def forward():
        with torch.no_grad(), run.autocast():
            return model(x)
    return run.timed(forward)


def stylegan2_step(run, root, plugins):
    """One official StyleGAN2-ADA training iteration (training/training_loop.py at batch_idx 0:
    every phase runs) with the official networks and loss, imported from the checkout `root`."""
    root = os.path.abspath(root)
    if root not in sys.path:
        sys.path.insert(0, root)
    from torch_utils import misc
    from torch_utils.ops import bias_act, upfirdn2d
    from training import loss as sg2_loss, networks
    if not plugins:  # the reference (eager) paths instead of compiling the CUDA kernels
        bias_act._init = upfirdn2d._init = lambda: False
    dev, batch = run.device, SG2_BATCH
    G = networks.Generator(**SG2_G).train().requires_grad_(False).to(dev)
    D = networks.Discriminator(**SG2_D).train().requires_grad_(False).to(dev)
    G_ema = copy.deepcopy(G).eval()
    loss = sg2_loss.StyleGAN2Loss(device=dev, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D,
                                  augment_pipe=None, **SG2_LOSS)
    phases = []
    for name, module in [("G", G), ("D", D)]:
        interval = SG2_REG_INTERVAL[name]
        r = interval / (interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=0.002 * r, betas=[b ** r for b in (0.0, 0.99)], eps=1e-8)
        phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
    c_dim = SG2_G["c_dim"]
    real = torch.rand(batch, 3, 32, 32, device=dev) * 2 - 1
    real_c = F.one_hot(torch.randint(0, c_dim, (batch,), device=dev), c_dim).float()
    ema_beta = 0.5 ** (batch / max(SG2_EMA_KIMG * 1000, 1e-8))

    def step():
        all_z = torch.randn([len(phases) * batch, SG2_G["z_dim"]], device=dev).split(batch)
        all_c = F.one_hot(torch.randint(0, c_dim, (len(phases) * batch,), device=dev), c_dim).float().split(batch)
        for (name, module, opt, interval), z, c in zip(phases, all_z, all_c):
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            loss.accumulate_gradients(phase=name, real_img=real, real_c=real_c, gen_z=z, gen_c=c, sync=True,
                                      gain=interval)
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)
    return run.timed(step)


def pytorch_benches(size, batch, stylegan2=None, stylegan2_plugins=False):
    """{name: (images per timed run, fn(run) → median seconds)}, names as the Rust binary's.
    The StyleGAN2 workload is listed only when the official code's path `stylegan2` is given."""
    if size == "tiny":
        import timm
        from gen_autoencoder import TINY
        from gen_unet import TINY_A
        from timm.models.vision_transformer import VisionTransformer
        return {
            "vit_tiny_train_step_b8": (8, lambda r: vit_step(r, VisionTransformer(
                img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=9), 8, 32)),
            "vit_s16_train_step_b2": (2, lambda r: vit_step(r, timm.create_model(
                "vit_small_patch16_224", pretrained=False, num_classes=9), 2, 224)),
            "ae_tiny_train_step_b4": (4, lambda r: ae_step(r, TINY, 4)),
            "unet_tiny_train_step_b4": (4, lambda r: unet_step(r, TINY_A, 32, 4)),
            "ddim_tiny_step_b4": (4 / 50, lambda r: ddim_tiny_step(r, 4)),
            "fid_inception_pool3_b2": (2, lambda r: inception(r, 2)),
            **({SG2_NAME: (SG2_BATCH, lambda r: stylegan2_step(r, stylegan2, stylegan2_plugins))}
               if stylegan2 else {}),
        }
    import timm
    from gen_autoencoder import PAPER
    from gen_unet import OFFICIAL_UNET
    b = {k: batch or v for k, v in PAPER_BATCH.items()}
    return {
        f"ae_kl_f4_train_step_b{b['ae']}": (b["ae"], lambda r: ae_step(r, PAPER, b["ae"])),
        f"unet_paper_train_step_b{b['dm']}": (b["dm"], lambda r: unet_step(r, OFFICIAL_UNET, 64, b["dm"])),
        f"phi_paper_train_step_b{b['phi']}": (b["phi"], lambda r: phi_step(r, b["phi"])),
        f"vit_b16_train_step_b{b['vit']}": (b["vit"], lambda r: vit_step(r, timm.create_model(
            "vit_base_patch16_224", pretrained=False, num_classes=9), b["vit"], 224)),
        f"ddim_guided_paper_step_b{b['ddim']}": (b["ddim"] / DDIM_STEPS, lambda r: ddim_guided_step(r, b["ddim"])),
    }


def rust_time(args, name):
    """Median seconds of one workload in the Rust binary (run per workload, right next to
    the PyTorch run of the same workload, so both see the same machine load)."""
    cmd = [args.rust_bin, "--threads", str(args.threads), "--iters", str(args.iters), "--only", name,
           "--size", args.size, "--device", args.device, "--precision", args.precision,
           "--channels-last", args.channels_last]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    results = [json.loads(line) for line in out.strip().splitlines()]
    return results[0]["median_s"] if results else None


def title(args):
    default = (args.size, args.device, args.precision) == ("tiny", "cpu", "f32")
    return "## Models vs PyTorch eager" + ("" if default else f": {args.size} size, {args.device}, {args.precision}")


def machine(args):
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(args.device))
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return f"CPU ({platform.processor() or platform.machine()}), {args.threads} thread(s)"


def table(rows, args, channels_last):
    lines = [
        title(args),
        "",
        f"{machine(args)}, torch {torch.__version__}, precision {args.precision} "
        f"({'autocast' if args.precision != 'f32' else 'no autocast'}), channels_last "
        f"{'on' if channels_last else 'off'} for the conv models; each workload alternates Rust and PyTorch for "
        f"{args.rounds} rounds of {args.iters} timed runs (after one warm-up); times are medians over rounds, the "
        "ratio is the median of the per-round ratios (range in brackets); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end; "
        "ratio = Rust (tch) time / PyTorch eager time (below 1: Rust faster); images/s = batch / step time "
        f"(DDIM: batch / (steps × step time), 50 steps tiny, {DDIM_STEPS} paper, decoding excluded). "
        f"Rust binary `{os.path.relpath(args.rust_bin)}`. Generated by `benches/models_vs_pytorch.py`.",
        "",
        "| workload | Rust tch (ms) | PyTorch eager (ms) | Rust images/s | PyTorch images/s | ratio [range] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, images, rust, torch_s, ratio, low, high in rows:
        lines.append(f"| {name} | {rust * 1e3:.1f} | {torch_s * 1e3:.1f} | {images / rust:.3g} | "
                     f"{images / torch_s:.3g} | {ratio:.2f} [{low:.2f}–{high:.2f}] |")
    return "\n".join(lines) + "\n"


def write_section(path, section, heading):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    pattern = re.compile(re.escape(heading) + r"\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section.rstrip("\n"), text) if pattern.search(text) \
        else text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rust-bin", required=True)
    parser.add_argument("--size", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["f32", "bf16", "fp16"], default="f32")
    parser.add_argument("--batch", type=int, help="override every workload's batch size")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="channels_last for the conv models (auto: on for CUDA)")
    parser.add_argument("--only", nargs="*", help="workload names to run (default: all of --size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating Rust/PyTorch rounds per workload (the ratio is the median "
                             "of the per-round ratios, so load changes between rounds cancel)")
    parser.add_argument("--write", help="Markdown file to put the table into")
    parser.add_argument("--stylegan2-ada", metavar="PATH",
                        help=f"checkout of NVlabs/stylegan2-ada-pytorch, for {SG2_NAME} (tiny size)")
    parser.add_argument("--stylegan2-plugins", action="store_true",
                        help="let the official bias_act/upfirdn2d build and use their CUDA kernels "
                             "(default: their pure-PyTorch reference paths)")
    args = parser.parse_args()
    asked_sg2 = bool(args.only) and SG2_NAME in args.only
    stylegan2 = args.stylegan2_ada
    if args.size == "tiny" and (asked_sg2 or not args.only):
        why = None
        if not stylegan2:
            why = "needs --stylegan2-ada PATH (a checkout of NVlabs/stylegan2-ada-pytorch)"
        elif not os.path.isfile(os.path.join(stylegan2, "training", "networks.py")):
            why = f"--stylegan2-ada {stylegan2}: no training/networks.py there"
        elif args.precision != "f32":
            why = f"runs in f32 only (the official blocks assert their dtype; --precision {args.precision})"
        if why and asked_sg2:
            parser.error(f"{SG2_NAME} {why}")
        if why:
            print(f"note: skipping {SG2_NAME}: {why}", file=sys.stderr)
            stylegan2 = None
    elif asked_sg2:
        parser.error(f"{SG2_NAME} is a workload of --size tiny")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device")
    if args.precision == "fp16" and not args.device.startswith("cuda"):
        parser.error("--precision fp16 needs --device cuda (CPU autocast: bf16)")
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and args.device.startswith("cuda"))
    run = Run(args.device, args.precision, channels_last, args.iters)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []
    for name, (images, bench) in pytorch_benches(args.size, args.batch, stylegan2, args.stylegan2_plugins).items():
        if args.only and name not in args.only:
            continue
        pairs = []
        for _ in range(args.rounds):
            rust = rust_time(args, name)
            if rust is None:
                break
            pairs.append((rust, bench(run)))
            print(f"{name}: rust {rust:.4f}s, pytorch {pairs[-1][1]:.4f}s", file=sys.stderr)
            if run.device.type == "cuda":
                torch.cuda.empty_cache()
        if pairs:
            ratios = [r / p for r, p in pairs]
            rows.append((name, images, statistics.median(r for r, _ in pairs), statistics.median(p for _, p in pairs),
                         statistics.median(ratios), min(ratios), max(ratios)))
    section = table(rows, args, channels_last)
    print(section)
    if args.write:
        write_section(args.write, section, title(args))


if __name__ == "__main__":
    main()
