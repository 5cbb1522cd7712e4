//! Image-set bytes as model values and back: uint8 [0, 255] ↔ float [-1, 1]
//! (x/127.5 − 1, SPEC §1), the range the autoencoder and the diffusion model work in.

use tch::{Device, Kind, Tensor};

/// uint8 [0, 255] → float [-1, 1].
pub fn to_unit_range(images: &Tensor) -> Tensor {
    images.to_kind(Kind::Float) / 127.5 - 1.0
}

/// float [-1, 1] → uint8 on the CPU, clamped, ((x + 1)·127.5) truncated (SPEC §1 notes).
pub fn to_uint8(images: &Tensor) -> Tensor {
    ((images.clamp(-1.0, 1.0) + 1.0) * 127.5)
        .to_kind(Kind::Uint8)
        .to_device(Device::Cpu)
}
