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

Every output tensor is contiguous float32 (integer tensors other than BatchNorm's
`num_batches_tracked`, which is dropped, are refused). Pickled checkpoints are loaded with
`weights_only=True` unless --trust-pickle is given (only for files you trust).
"""

import argparse
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
