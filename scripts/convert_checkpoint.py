#!/usr/bin/env python3
"""Convert official HistoDiffAug / LDM / guided-diffusion / DINO checkpoints to safetensors
that histodiff loads strictly by name (see docs/weights.md and SPEC §10).

Subcommands:
  autoencoder CKPT OUT [--keep-loss]
      Lightning AutoencoderKL .ckpt -> encoder.*, decoder.*, quant_conv.*, post_quant_conv.*
      (and loss.* with --keep-loss: LPIPS, discriminator, logvar).
  ldm CKPT OUT [--ema] [--first-stage AE_OUT] [--buffers BUF_OUT]
      Lightning LatentDiffusion .ckpt -> the UNet under its own names (prefix
      `model.diffusion_model.` removed). --ema writes the EMA shadow weights
      (`model_ema.<name without dots>`) under the UNet names instead. --first-stage writes the
      embedded autoencoder (`first_stage_model.*`), --buffers the schedule buffers and
      `scale_factor`; `scale_factor` is also kept in OUT's metadata.
  classifier PT OUT
      guided-diffusion classifier state dict (`model_XXXXXX.pt`), `module.` prefixes removed.
  vit PTH OUT [--key model]
      DINO/iBOT ViT checkpoint; takes the entry --key (default: `model`, else `teacher`,
      `state_dict`, or the dict itself) and strips `module.` / `backbone.` prefixes.
  lpips VGG16_PTH LIN_PTH OUT
      torchvision vgg16 ImageNet weights + taming's vgg_lpips `vgg.pth` -> LPIPS under taming's
      names (scaling_layer.*, net.slice{1..5}.*, lin{0..4}.model.1.weight).
  stylegan2 PKL OUT --stylegan2-ada PATH   (needs --trust-pickle)
      NVlabs/stylegan2-ada-pytorch `network-snapshot-XXXXXX.pkl` -> `G_ema.<official name>`
      (the EMA generator's state dict: parameters and buffers) with the architecture as JSON
      in the metadata key `histodiff.stylegan2`. The pickle is opened with the official
      `legacy.load_network_pkl` (PATH: a checkout of the official code, for dnnlib/torch_utils);
      it executes the source code embedded in the snapshot, hence --trust-pickle. Conditional
      generators (c_dim > 0) with the 'skip' synthesis architecture only.

Every output tensor is contiguous float32 (integer tensors other than BatchNorm's
`num_batches_tracked`, which is dropped, are refused). Pickled checkpoints are loaded with
`weights_only=True` unless --trust-pickle is given (only for files you trust).
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

AE_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
UNET_PREFIX = "model.diffusion_model."
FIRST_STAGE_PREFIX = "first_stage_model."
LDM_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
               "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
               "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
               "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
               "scale_factor")
# torchvision vgg16.features index ranges of taming's five LPIPS slices.
VGG_SLICES = [(1, 0, 4), (2, 4, 9), (3, 9, 16), (4, 16, 23), (5, 23, 30)]
LPIPS_SHIFT = [-0.030, -0.088, -0.188]
LPIPS_SCALE = [0.458, 0.448, 0.450]


class ConversionError(Exception):
    pass


def load(path, trust_pickle):
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # pickle refusal or a corrupt file: say which and how to proceed
        hint = "" if trust_pickle else " (if you trust this file, retry with --trust-pickle)"
        raise ConversionError(f"{path}: cannot load checkpoint: {e}{hint}") from e


def state_dict_of(ckpt, path):
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ConversionError(f"{path}: no state dict found")
    return sd


def clean(tensors, origin):
    """Contiguous float32 tensors, num_batches_tracked dropped."""
    out = {}
    for k, v in tensors.items():
        if k.endswith("num_batches_tracked"):
            continue
        if not isinstance(v, torch.Tensor):
            raise ConversionError(f"{origin}: `{k}` is not a tensor ({type(v).__name__})")
        if not v.is_floating_point():
            raise ConversionError(f"{origin}: `{k}` has non-float dtype {v.dtype}")
        out[k] = v.detach().to(torch.float32).contiguous().clone()
    return out


def write(tensors, out, origin, metadata=None):
    if not tensors:
        raise ConversionError(f"{origin}: nothing to write to {out}")
    save_file(clean(tensors, origin), out, metadata=metadata)
    print(f"{out}: {len(tensors)} tensors", file=sys.stderr)


def strip(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def convert_autoencoder(args):
    sd = state_dict_of(load(args.ckpt, args.trust_pickle), args.ckpt)
    keep = AE_PREFIXES + (("loss.",) if args.keep_loss else ())
    unknown = [k for k in sd if not k.startswith(AE_PREFIXES + ("loss.",))]
    if unknown:
        raise ConversionError(f"{args.ckpt}: not an AutoencoderKL checkpoint, unexpected keys "
                              f"{unknown[:5]}")
    write({k: v for k, v in sd.items() if k.startswith(keep)}, args.out, args.ckpt)


def ema_name(unet_key):
    # LitEma stores `model.<name>` as `model_ema.<name with every dot removed>`.
    return "model_ema." + ("diffusion_model." + unet_key).replace(".", "")


def convert_ldm(args):
    sd = state_dict_of(load(args.ckpt, args.trust_pickle), args.ckpt)
    unet = strip(sd, UNET_PREFIX)
    if not unet:
        raise ConversionError(f"{args.ckpt}: no `{UNET_PREFIX}*` keys: not a LatentDiffusion checkpoint")
    if args.ema:
        missing = [k for k in unet if ema_name(k) not in sd]
        if missing:
            raise ConversionError(f"{args.ckpt}: no EMA weights for {missing[:5]}")
        unet = {k: sd[ema_name(k)] for k in unet}
    meta = {}
    if "scale_factor" in sd:
        meta["scale_factor"] = repr(float(sd["scale_factor"]))
    write(unet, args.out, args.ckpt, metadata=meta)
    if args.first_stage:
        write(strip(sd, FIRST_STAGE_PREFIX), args.first_stage, args.ckpt)
    if args.buffers:
        write({k: sd[k] for k in LDM_BUFFERS if k in sd}, args.buffers, args.ckpt)


def strip_wrappers(sd):
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def convert_classifier(args):
    sd = state_dict_of(load(args.ckpt, args.trust_pickle), args.ckpt)
    write(strip_wrappers(sd), args.out, args.ckpt)


def convert_vit(args):
    ckpt = load(args.ckpt, args.trust_pickle)
    keys = [args.key] if args.key else ["model", "teacher", "state_dict"]
    sd = next((ckpt[k] for k in keys if isinstance(ckpt, dict) and k in ckpt), None)
    if sd is None and args.key is None and isinstance(ckpt, dict):
        sd = ckpt
    if not isinstance(sd, dict):
        raise ConversionError(f"{args.ckpt}: no model state dict under {keys}")
    write(strip_wrappers(sd), args.out, args.ckpt)


def convert_lpips(args):
    vgg = state_dict_of(load(args.vgg, args.trust_pickle), args.vgg)
    lin = strip_wrappers(state_dict_of(load(args.lin, args.trust_pickle), args.lin))
    out = {"scaling_layer.shift": torch.tensor(LPIPS_SHIFT)[None, :, None, None],
           "scaling_layer.scale": torch.tensor(LPIPS_SCALE)[None, :, None, None]}
    for n, lo, hi in VGG_SLICES:
        for i in range(lo, hi):
            for leaf in ("weight", "bias"):
                if f"features.{i}.{leaf}" in vgg:
                    out[f"net.slice{n}.{i}.{leaf}"] = vgg[f"features.{i}.{leaf}"]
    if len(out) != 2 + 26:
        raise ConversionError(f"{args.vgg}: expected torchvision vgg16 `features.*` conv weights")
    for i in range(5):
        key = f"lin{i}.model.1.weight"
        if key not in lin:
            raise ConversionError(f"{args.lin}: missing `{key}` (taming vgg_lpips vgg.pth expected)")
        out[key] = lin[key]
    write(out, args.out, f"{args.vgg} + {args.lin}")


# Constructor defaults of training/networks.py (SynthesisNetwork / SynthesisBlock / SynthesisLayer
# and MappingNetwork): the keys a snapshot's init_kwargs may hold beyond the recorded ones, with
# the values the histodiff port implements.
SG2_SYNTHESIS_DEFAULTS = dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                              architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                              activation="lrelu", kernel_size=3, fp16_channels_last=False)
SG2_SYNTHESIS_FREE = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "fp16_channels_last"}
SG2_MAPPING_DEFAULTS = dict(num_layers=8, embed_features=None, layer_features=None, activation="lrelu",
                            lr_multiplier=0.01, w_avg_beta=0.995)
SG2_MAPPING_FREE = {"num_layers"}


def sg2_generator_arch(G, path):
    """The `histodiff.stylegan2` JSON of an official Generator (the fields of the Rust
    `Stylegan2Config`, in its order); refuses what the port lacks. The FP16 settings
    (num_fp16_res, fp16_channels_last) only change the official code's compute precision, not
    the float32 weights, and are not recorded."""
    if G.c_dim == 0:
        raise ConversionError(f"{path}: G_ema is unconditional (c_dim 0); histodiff needs a "
                              "class-conditional StyleGAN2 (train.py --cond=1)")
    kwargs = G.init_kwargs if hasattr(G, "init_kwargs") else None
    if kwargs is None:
        raise ConversionError(f"{path}: G_ema has no init_kwargs (not a persistent official Generator)")
    syn = dict(kwargs.get("synthesis_kwargs", None) or {})
    mapping = dict(kwargs.get("mapping_kwargs", None) or {})
    blocks = [getattr(G.synthesis, f"b{res}") for res in G.synthesis.block_resolutions]
    archs = sorted({b.architecture for b in blocks} | {syn.get("architecture", "skip")})
    if archs != ["skip"]:
        raise ConversionError(f"{path}: synthesis architecture {archs}; only 'skip' (the default) is supported")
    unsupported = []
    for kw, defaults, free, where in [(syn, SG2_SYNTHESIS_DEFAULTS, SG2_SYNTHESIS_FREE, "synthesis_kwargs"),
                                      (mapping, SG2_MAPPING_DEFAULTS, SG2_MAPPING_FREE, "mapping_kwargs")]:
        for k, v in kw.items():
            if k in free:
                continue
            default = defaults.get(k, KeyError)
            same = v == default or (isinstance(v, (list, tuple)) and list(v) == default)
            if k in ("embed_features", "layer_features") and v == G.w_dim:
                same = True
            if k == "w_avg_beta" and v is not None:  # training-time decay; G_ema only needs w_avg
                same = True
            if not same:
                unsupported.append(f"{where}.{k}={v!r}")
    if unsupported:
        raise ConversionError(f"{path}: G_ema uses settings the histodiff port does not implement: "
                              + ", ".join(unsupported))
    arch = dict(z_dim=int(G.z_dim), w_dim=int(G.w_dim), c_dim=int(G.c_dim),
                img_resolution=int(G.img_resolution), img_channels=int(G.img_channels),
                mapping_layers=int(G.mapping.num_layers),
                channel_base=int(syn.get("channel_base", SG2_SYNTHESIS_DEFAULTS["channel_base"])),
                channel_max=int(syn.get("channel_max", SG2_SYNTHESIS_DEFAULTS["channel_max"])),
                conv_clamp=None if syn.get("conv_clamp") is None else float(syn["conv_clamp"]),
                architecture="skip")
    # The recovered channel_base/channel_max must reproduce every block's width.
    for b in blocks:
        want = min(arch["channel_base"] // b.resolution, arch["channel_max"])
        got = int(b.conv1.weight.shape[0])
        if got != want:
            raise ConversionError(f"{path}: block b{b.resolution} has {got} channels, but channel_base "
                                  f"{arch['channel_base']} / channel_max {arch['channel_max']} give {want}")
    return arch


def convert_stylegan2(args):
    if not args.trust_pickle:
        raise ConversionError(f"{args.pkl}: a StyleGAN2-ADA snapshot is a plain pickle that runs the "
                              "source code embedded in it; if you trust this file, retry with --trust-pickle")
    root = os.path.abspath(args.stylegan2_ada)
    if not os.path.isfile(os.path.join(root, "legacy.py")):
        raise ConversionError(f"--stylegan2-ada {args.stylegan2_ada}: no legacy.py there "
                              "(expected a checkout of NVlabs/stylegan2-ada-pytorch)")
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import legacy  # official: imports dnnlib, torch_utils
    except ImportError as e:
        raise ConversionError(f"cannot import the official code from {root}: {e}") from e
    try:
        with open(args.pkl, "rb") as f:
            data = legacy.load_network_pkl(f)
    except KeyError as e:  # legacy.py asserts the presence of G, D and G_ema
        raise ConversionError(f"{args.pkl}: not a complete snapshot, no `{e.args[0]}` network in it") from e
    except Exception as e:  # not a snapshot, a corrupt file, code that does not import
        raise ConversionError(f"{args.pkl}: cannot load the network pickle: {type(e).__name__}: {e}") from e
    G = data.get("G_ema") if isinstance(data, dict) else None
    if not isinstance(G, torch.nn.Module):
        raise ConversionError(f"{args.pkl}: no `G_ema` network in the snapshot")
    arch = sg2_generator_arch(G, args.pkl)
    tensors = {f"G_ema.{k}": v for k, v in G.state_dict().items()}
    meta = json.dumps(arch, separators=(",", ":"))  # as serde_json writes Stylegan2Config
    write(tensors, args.out, args.pkl, metadata={"histodiff.stylegan2": meta})
    print(f"{args.out}: histodiff.stylegan2 = {meta}", file=sys.stderr)


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trust-pickle", action="store_true",
                    help="unpickle arbitrary objects (only for checkpoints you trust)")
    sub = ap.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("autoencoder")
    p.add_argument("ckpt"), p.add_argument("out")
    p.add_argument("--keep-loss", action="store_true", help="also write loss.* (LPIPS, discriminator)")
    p.set_defaults(run=convert_autoencoder)
    p = sub.add_parser("ldm")
    p.add_argument("ckpt"), p.add_argument("out")
    p.add_argument("--ema", action="store_true", help="write the EMA weights under the UNet names")
    p.add_argument("--first-stage", help="also write first_stage_model.* here")
    p.add_argument("--buffers", help="also write the schedule buffers and scale_factor here")
    p.set_defaults(run=convert_ldm)
    p = sub.add_parser("classifier")
    p.add_argument("ckpt"), p.add_argument("out")
    p.set_defaults(run=convert_classifier)
    p = sub.add_parser("vit")
    p.add_argument("ckpt"), p.add_argument("out")
    p.add_argument("--key", help="checkpoint entry holding the model (default: model/teacher/state_dict)")
    p.set_defaults(run=convert_vit)
    p = sub.add_parser("lpips")
    p.add_argument("vgg"), p.add_argument("lin"), p.add_argument("out")
    p.set_defaults(run=convert_lpips)
    p = sub.add_parser("stylegan2")
    p.add_argument("pkl"), p.add_argument("out")
    p.add_argument("--stylegan2-ada", required=True, metavar="PATH",
                   help="checkout of NVlabs/stylegan2-ada-pytorch (for legacy.py, dnnlib, torch_utils)")
    p.set_defaults(run=convert_stylegan2)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except ConversionError as e:
        print(f"convert_checkpoint: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
