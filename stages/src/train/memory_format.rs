//! channels_last (NHWC) memory layout for the conv models (autoencoder, UNet, patch
//! discriminator) on CUDA, where cuDNN's convolutions — tensor-core ones in fp16/bf16
//! above all — run on NHWC natively and NCHW inputs pay a transpose around each conv.
//!
//! tch 0.26 has no `MemoryFormat` argument anywhere (`contiguous()` is libtorch's default,
//! NCHW), but the layout is only a matter of strides: `permute(0,2,3,1).contiguous()`
//! writes the NHWC bytes, and permuting that back gives a tensor of the original (N,C,H,W)
//! shape with strides (HWC, 1, WC, C) — precisely libtorch's channels_last, which its
//! kernels detect from the strides and propagate (a conv of channels_last inputs returns
//! channels_last, autograd gives gradients the parameter's layout, and Adam's `zeros_like`
//! state follows it).
//!
//! Applied on CUDA only ([`use_channels_last`]). On CPU oneDNN takes either layout, and
//! what we measured on 2 AVX-512 cores (`bench_models --channels-last on|off`) does not
//! justify a default: a lone 3×3 conv is faster channels_last (ratio 0.66–0.77 in f32,
//! 0.68–0.91 under bf16 autocast), but a whole kl-f4 forward (norms, resamplings and the
//! attention reshapes between the convs) ranged from 0.59 to 1.27 across runs on a loaded
//! machine. `convert_var_store` works on CPU too, for a measurement of one's own
//! (`benches/models_vs_pytorch.py --channels-last on`).

use tch::{nn::VarStore, Device, Tensor};

/// Whether the conv models should run channels_last on `device`: CUDA only.
pub fn use_channels_last(device: Device) -> bool {
    device.is_cuda()
}

/// The strides of a channels_last tensor of `size` (N, C, H, W).
fn channels_last_strides(size: &[i64]) -> [i64; 4] {
    let (c, h, w) = (size[1], size[2], size[3]);
    [h * w * c, 1, w * c, c]
}

/// Whether `t` is a 4-D tensor laid out channels_last.
pub fn is_channels_last(t: &Tensor) -> bool {
    let size = t.size();
    size.len() == 4 && t.stride() == channels_last_strides(&size)
}

/// The same values as `t`, channels_last when `t` is 4-D (other tensors are returned
/// unchanged, shallowly cloned). Differentiable: a permute and a copy.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 || is_channels_last(t) {
        return t.shallow_clone();
    }
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Rewrites every 4-D variable of `vs` (the conv kernels) as channels_last in place, so the
/// layers built from it keep their tensors; returns how many were converted. Call it
/// before creating the optimizer (its state then follows the layout).
pub fn convert_var_store(vs: &VarStore) -> usize {
    let _guard = tch::no_grad_guard();
    let mut converted = 0;
    for (_, mut var) in vs.variables() {
        if var.dim() == 4 && !is_channels_last(&var) {
            var.set_data(&to_channels_last(&var));
            converted += 1;
        }
    }
    converted
}

/// [`convert_var_store`] when [`use_channels_last`] holds for the store's device; returns
/// whether it did.
pub fn prepare_var_store(vs: &VarStore) -> bool {
    let apply = use_channels_last(vs.device());
    if apply {
        convert_var_store(vs);
    }
    apply
}

/// An input batch in the layout the model on `device` runs in (channels_last on CUDA).
pub fn prepare_batch(batch: &Tensor, device: Device) -> Tensor {
    if use_channels_last(device) {
        to_channels_last(batch)
    } else {
        batch.shallow_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Kind};

    #[test]
    fn conversion_keeps_values_and_sets_channels_last_strides() {
        tch::manual_seed(0);
        let x = Tensor::randn([2, 3, 5, 7], (Kind::Float, Device::Cpu));
        assert!(!is_channels_last(&x));
        let y = to_channels_last(&x);
        assert!(is_channels_last(&y));
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), [105, 1, 21, 3]);
        assert!(y.equal(&x));
        let flat = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(to_channels_last(&flat).stride(), [4, 1]);
    }

    #[test]
    fn var_store_conversion_is_in_place_and_trains_alike() {
        let conv_store = || {
            let vs = VarStore::new(Device::Cpu);
            let conv = nn::conv2d(vs.root() / "conv", 3, 8, 3, Default::default());
            (vs, conv)
        };
        let x = Tensor::randn([2, 3, 9, 9], (Kind::Float, Device::Cpu));
        let (reference_vs, reference) = conv_store();
        let expected = reference.forward(&x);
        expected.sum(Kind::Float).backward();
        let (mut vs, conv) = conv_store();
        vs.copy(&reference_vs).unwrap();
        assert_eq!(convert_var_store(&vs), 1, "the kernel; the bias is 1-D");
        assert!(is_channels_last(&conv.ws), "the layer sees the new layout");
        let out = conv.forward(&to_channels_last(&x));
        assert!(is_channels_last(&out), "libtorch propagates the layout");
        assert!((&out - &expected).abs().max().double_value(&[]) < 1e-5);
        out.sum(Kind::Float).backward();
        assert!(
            is_channels_last(&conv.ws.grad()),
            "gradients follow the parameter"
        );
        let grad_err = (conv.ws.grad() - reference.ws.grad()).abs().max();
        assert!(grad_err.double_value(&[]) < 1e-4);
        assert!(!prepare_var_store(&vs), "nothing to do on CPU");
        assert!(!is_channels_last(&prepare_batch(&x, Device::Cpu)));
    }
}
