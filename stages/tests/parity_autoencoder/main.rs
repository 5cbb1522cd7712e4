//! Parity of the kl-f4 autoencoder, LPIPS, the PatchGAN discriminator and the
//! LPIPSWithDiscriminator loss against the PyTorch references of
//! tests/fixtures/gen_autoencoder.py (and, for the encoder/decoder, diffusers' AutoencoderKL),
//! plus key-set/shape/parameter-count checks at paper scale and the checkpoint converter.

mod checkpoints;
mod fixtures;
mod loss;
mod models;
