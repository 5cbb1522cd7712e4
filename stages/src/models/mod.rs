//! Neural networks of the pipeline, each created at the PyTorch attribute names of its
//! reference so a converted state dict loads by name.

pub mod unet;
