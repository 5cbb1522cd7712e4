//! Neural network models, each created at PyTorch attribute names so reference state
//! dicts load by name.

pub mod inception;
pub mod inception_blocks;
pub mod vit;
pub mod vit_block;
