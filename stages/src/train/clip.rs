//! Gradient clipping by global L2 norm, as `torch.nn.utils.clip_grad_norm_`.

use tch::Tensor;

/// Scales every gradient by min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖ the L2 norm of all
/// gradients together, and returns ‖g‖ (before clipping). Parameters without a gradient
/// are skipped; with no gradient at all the norm is 0.
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.grad())
        .filter(Tensor::defined)
        .collect();
    if grads.is_empty() {
        return 0.0;
    }
    // torch: vector_norm of the stacked per-tensor norms.
    let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
    let total = Tensor::stack(&norms, 0).norm();
    // torch always multiplies (by a coefficient clamped to 1) and never branches on the value.
    // `max_norm / t` is `t.reciprocal() * max_norm` in torch (Tensor.__rtruediv__).
    let coef = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
    for g in &grads {
        let mut g = g.shallow_clone();
        let _ = g.g_mul_(&coef);
    }
    total.double_value(&[])
}
