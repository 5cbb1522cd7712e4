//! Mixed precision as libtorch autocast, with the dtype chosen: fp16 or bf16 on CUDA, bf16
//! on CPU.
//!
//! Under autocast the weights, the optimizer state and the update stay f32; only the ops on
//! libtorch's lower-precision list (convolutions, matmul, linear, bmm, scaled-dot-product
//! attention) run in the low dtype, and those on its f32 list (losses, exp/log/pow-like ops;
//! on CUDA also softmax and the norms) are computed in f32 — exactly what `torch.autocast`
//! does in the PyTorch peers. (The UNet family's GroupNorm32 casts to f32 by itself, as
//! openaimodel's does.) Casting the whole model to bf16 instead (the path this module replaced) rounds
//! every update to 8 mantissa bits: an Adam step of lr 4.5e-6 (the autoencoder's) on a
//! weight of 0.05 is below half of one bf16 ulp of it, so it would vanish outright.
//!
//! tch 0.26 only wraps libtorch's legacy CUDA on/off switch (`tch::autocast`, whose dtype is
//! libtorch's fp16 default). The dtype-aware functions are libtorch C++ API
//! (`at::autocast::{is,set}_autocast_enabled`, `{get,set}_autocast_dtype`,
//! `{increment,decrement}_nesting`, `clear_cache`, all in `libtorch_cpu`): they are looked
//! up at run time with `dlsym`, so a libtorch without them gives [`AutocastError::MissingSymbol`]
//! when a guard is entered instead of failing to link.
//!
//! Autocast state is thread-local in libtorch (like grad mode): a guard affects only the
//! thread that entered it, which is why [`AutocastGuard`] is neither `Send` nor `Sync`.
//! Take it inside the thread that runs the forward pass.

use std::ffi::{c_int, c_void, CStr};
use std::marker::PhantomData;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// Numeric precision of a training or inference run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32 (autocast off).
    #[default]
    F32,
    /// Autocast to float16 (CUDA only). Training needs loss scaling against gradient
    /// underflow ([`LossScaler`]): f16 has 5 exponent bits.
    F16,
    /// Autocast to bfloat16 (CUDA, or CPUs with bf16 support). No loss scaling: bf16 has
    /// f32's exponent range.
    Bf16,
}

impl Precision {
    /// Parses `f32`/`fp32`, `f16`/`fp16`, `bf16`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "f32" | "fp32" => Some(Self::F32),
            "f16" | "fp16" => Some(Self::F16),
            "bf16" => Some(Self::Bf16),
            _ => None,
        }
    }

    /// The dtype autocast computes in, None for f32.
    pub fn autocast_kind(self) -> Option<Kind> {
        match self {
            Self::F32 => None,
            Self::F16 => Some(Kind::Half),
            Self::Bf16 => Some(Kind::BFloat16),
        }
    }

    /// Whether training in this precision needs a [`LossScaler`].
    pub fn needs_loss_scaling(self) -> bool {
        self == Self::F16
    }
}

/// Why autocast could not be entered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutocastError {
    #[error("libtorch does not export `{demangled}` (symbol `{symbol}`): dtype-selecting autocast needs libtorch >= 2.4 (tch 0.26 is built for 2.13.0)")]
    MissingSymbol {
        symbol: &'static str,
        demangled: &'static str,
    },
    #[error("{precision:?} autocast is not available on {device}: {reason}")]
    Unsupported {
        precision: Precision,
        device: String,
        reason: &'static str,
    },
}

/// c10::DeviceType values (torch/headeronly/core/DeviceType.h, `enum class : int8_t`).
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
/// c10::ScalarType values (torch/headeronly/core/ScalarType.h, `enum class : int8_t`).
const SCALAR_HALF: i8 = 5;
const SCALAR_BFLOAT16: i8 = 15;

/// The libtorch functions, as C-ABI pointers: on the Itanium C++ ABI (Linux, macOS) a free
/// function taking `enum class : int8_t` and `bool` is called exactly like a C function
/// taking `int8_t` and `bool`. None of them throws for the CPU and CUDA device types.
struct Api {
    is_enabled: unsafe extern "C" fn(i8) -> bool,
    set_enabled: unsafe extern "C" fn(i8, bool),
    get_dtype: unsafe extern "C" fn(i8) -> i8,
    set_dtype: unsafe extern "C" fn(i8, i8),
    increment_nesting: unsafe extern "C" fn() -> c_int,
    decrement_nesting: unsafe extern "C" fn() -> c_int,
    clear_cache: unsafe extern "C" fn(),
}

/// (mangled name, declaration) of every function [`Api`] needs.
const SYMBOLS: [(&CStr, &str); 7] = [
    (
        c"_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE",
        "at::autocast::is_autocast_enabled(c10::DeviceType)",
    ),
    (
        c"_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb",
        "at::autocast::set_autocast_enabled(c10::DeviceType, bool)",
    ),
    (
        c"_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE",
        "at::autocast::get_autocast_dtype(c10::DeviceType)",
    ),
    (
        c"_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE",
        "at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType)",
    ),
    (
        c"_ZN2at8autocast17increment_nestingEv",
        "at::autocast::increment_nesting()",
    ),
    (
        c"_ZN2at8autocast17decrement_nestingEv",
        "at::autocast::decrement_nesting()",
    ),
    (
        c"_ZN2at8autocast11clear_cacheEv",
        "at::autocast::clear_cache()",
    ),
];

/// The library that defines the functions, for when it is not in the global scope.
const LIBTORCH_CPU: [&CStr; 2] = [c"libtorch_cpu.so", c"libtorch_cpu.dylib"];

/// Address of `symbol` in the already-loaded libtorch, or null.
fn lookup(symbol: &CStr) -> *mut c_void {
    // SAFETY: dlsym/dlopen with valid NUL-terminated names; RTLD_NOLOAD never loads a
    // library, it only returns a (reference-counted) handle to one already mapped.
    unsafe {
        let found = libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr());
        if !found.is_null() {
            return found;
        }
        // `histodiff worker` dlopens this crate's cdylib with RTLD_LOCAL, which keeps the
        // libtorch it pulls in out of the global scope: ask for that library by name.
        for name in LIBTORCH_CPU {
            let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
            if handle.is_null() {
                continue;
            }
            let found = libc::dlsym(handle, symbol.as_ptr());
            // Only drops the reference taken above: the library stays mapped (it is a
            // dependency of this process's tch).
            libc::dlclose(handle);
            if !found.is_null() {
                return found;
            }
        }
        std::ptr::null_mut()
    }
}

fn resolve() -> Result<Api, AutocastError> {
    let mut found = [std::ptr::null_mut(); SYMBOLS.len()];
    for (slot, (symbol, demangled)) in found.iter_mut().zip(SYMBOLS) {
        *slot = lookup(symbol);
        if slot.is_null() {
            return Err(AutocastError::MissingSymbol {
                symbol: symbol.to_str().unwrap_or("?"),
                demangled,
            });
        }
    }
    // SAFETY: each address is the libtorch function whose declaration is listed beside its
    // mangled name in SYMBOLS, and the pointer types match those declarations (see Api).
    unsafe {
        Ok(Api {
            is_enabled: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i8) -> bool>(
                found[0],
            ),
            set_enabled: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i8, bool)>(
                found[1],
            ),
            get_dtype: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i8) -> i8>(found[2]),
            set_dtype: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i8, i8)>(found[3]),
            increment_nesting: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(
                found[4],
            ),
            decrement_nesting: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(
                found[5],
            ),
            clear_cache: std::mem::transmute::<*mut c_void, unsafe extern "C" fn()>(found[6]),
        })
    }
}

fn api() -> Result<&'static Api, AutocastError> {
    static API: OnceLock<Result<Api, AutocastError>> = OnceLock::new();
    API.get_or_init(resolve).as_ref().map_err(Clone::clone)
}

fn device_type(precision: Precision, device: Device) -> Result<i8, AutocastError> {
    let unsupported = |reason| AutocastError::Unsupported {
        precision,
        device: format!("{device:?}"),
        reason,
    };
    match device {
        Device::Cpu => Ok(DEVICE_CPU),
        Device::Cuda(_) => Ok(DEVICE_CUDA),
        _ => Err(unsupported("autocast is implemented for CPU and CUDA only")),
    }
}

fn scalar_type(precision: Precision, device_type: i8) -> Result<Option<i8>, AutocastError> {
    match (precision, device_type) {
        (Precision::F32, _) => Ok(None),
        (Precision::F16, DEVICE_CPU) => Err(AutocastError::Unsupported {
            precision,
            device: "Cpu".into(),
            reason: "CPUs have no fast f16 matmul; use bf16",
        }),
        (Precision::F16, _) => Ok(Some(SCALAR_HALF)),
        (Precision::Bf16, _) => Ok(Some(SCALAR_BFLOAT16)),
    }
}

fn kind_of(scalar_type: i8) -> Option<Kind> {
    match scalar_type {
        SCALAR_HALF => Some(Kind::Half),
        SCALAR_BFLOAT16 => Some(Kind::BFloat16),
        6 => Some(Kind::Float),
        _ => None,
    }
}

/// Autocast for one device type, in the calling thread, until dropped — `with
/// torch.autocast(device, dtype):`. Entering with [`Precision::F32`] switches autocast
/// *off* for the scope (`torch.autocast(enabled=False)`), e.g. for a loss that must be f32.
///
/// On drop it restores the enabled flag and dtype it found, and the outermost guard of the
/// thread (libtorch's nesting count, shared with `tch::autocast`) clears libtorch's cache of
/// weights cast to the low dtype, as torch.autocast's exit does. That cache is keyed by
/// tensor, not by version: run the optimizer step after the guard is dropped, never inside
/// it, or the next forward inside the same region would read stale casts.
/// Guards must be dropped in reverse order of entry (scopes guarantee it).
#[must_use = "autocast ends when the guard is dropped"]
pub struct AutocastGuard {
    api: &'static Api,
    device_type: i8,
    prev_enabled: bool,
    prev_dtype: i8,
    /// Autocast state is thread-local: the guard must be dropped on its own thread.
    _thread_bound: PhantomData<*const ()>,
}

impl std::fmt::Debug for AutocastGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutocastGuard")
            .field("device_type", &self.device_type)
            .field("prev_enabled", &self.prev_enabled)
            .field("prev_dtype", &self.prev_dtype)
            .finish()
    }
}

impl AutocastGuard {
    /// Enables autocast to `precision`'s dtype for `device`'s type (all CUDA devices share
    /// one setting, as in libtorch); F32 disables it. F16 on CPU and devices other than CPU
    /// and CUDA are errors.
    pub fn enter(precision: Precision, device: Device) -> Result<Self, AutocastError> {
        let device_type = device_type(precision, device)?;
        let dtype = scalar_type(precision, device_type)?;
        let api = api()?;
        // SAFETY: valid device and scalar types for the libtorch functions (see Api).
        unsafe {
            let prev_enabled = (api.is_enabled)(device_type);
            let prev_dtype = (api.get_dtype)(device_type);
            (api.set_enabled)(device_type, dtype.is_some());
            if let Some(dtype) = dtype {
                (api.set_dtype)(device_type, dtype);
            }
            (api.increment_nesting)();
            Ok(Self {
                api,
                device_type,
                prev_enabled,
                prev_dtype,
                _thread_bound: PhantomData,
            })
        }
    }

    /// The dtype autocast computes in on `device`'s type in this thread, None when off.
    pub fn active(device: Device) -> Result<Option<Kind>, AutocastError> {
        let device_type = device_type(Precision::F32, device)?;
        let api = api()?;
        // SAFETY: valid device type (see Api).
        unsafe {
            if (api.is_enabled)(device_type) {
                Ok(kind_of((api.get_dtype)(device_type)))
            } else {
                Ok(None)
            }
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in `enter`; the values restored are the ones libtorch returned.
        unsafe {
            if (self.api.decrement_nesting)() == 0 {
                (self.api.clear_cache)();
            }
            (self.api.set_enabled)(self.device_type, self.prev_enabled);
            (self.api.set_dtype)(self.device_type, self.prev_dtype);
        }
    }
}

/// Runs `f` under an [`AutocastGuard`] for `precision` on `device`.
pub fn run<T>(
    precision: Precision,
    device: Device,
    f: impl FnOnce() -> T,
) -> Result<T, AutocastError> {
    let _guard = AutocastGuard::enter(precision, device)?;
    Ok(f())
}

/// Dynamic loss scaling for f16 training, as `torch.amp.GradScaler`: the loss is multiplied
/// by `scale` before backward; gradients are divided by it before clipping and the step; a
/// non-finite gradient skips the step and halves the scale; `growth_interval` finite steps
/// in a row double it.
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    /// Current scale (torch's init_scale 2^16).
    pub scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: u32,
    /// Finite steps since the last change of scale (checkpoint it with the scale).
    pub growth_tracker: u32,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            growth_tracker: 0,
        }
    }
}

impl LossScaler {
    /// The loss to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divides every gradient by the scale; returns false if any gradient is not finite
    /// (then the optimizer step must be skipped).
    pub fn unscale(&self, params: &[(String, Tensor)]) -> bool {
        let _guard = tch::no_grad_guard();
        let inv = 1.0 / self.scale;
        // The finiteness flags stay on the device until the end: one host sync per step
        // instead of one per parameter (what makes a GPU wait).
        let mut all_finite: Option<Tensor> = None;
        for (_, p) in params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.g_mul_scalar_(inv);
                let finite = grad.isfinite().all();
                all_finite = Some(match all_finite {
                    Some(acc) => acc.logical_and(&finite),
                    None => finite,
                });
            }
        }
        all_finite.is_none_or(|flag| flag.int64_value(&[]) != 0)
    }

    /// Adjusts the scale after a step attempt (`found_finite` from [`LossScaler::unscale`]).
    pub fn update(&mut self, found_finite: bool) {
        if !found_finite {
            self.scale *= self.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker >= self.growth_interval {
                self.scale *= self.growth_factor;
                self.growth_tracker = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matmul_kind() -> Kind {
        let x = Tensor::ones([4, 4], tch::kind::FLOAT_CPU);
        x.matmul(&x).kind()
    }

    #[test]
    fn scaler_backs_off_on_overflow_and_grows_after_the_interval() {
        let w = Tensor::ones([3], tch::kind::FLOAT_CPU).set_requires_grad(true);
        let params = vec![("w".to_string(), w.shallow_clone())];
        let mut scaler = LossScaler {
            growth_interval: 2,
            ..LossScaler::default()
        };
        scaler.scale_loss(&(&w * 3.0).sum(Kind::Float)).backward();
        assert!(scaler.unscale(&params));
        assert_eq!(
            Vec::<f32>::try_from(&w.grad()).unwrap(),
            vec![3.0, 3.0, 3.0]
        );
        scaler.update(true);
        scaler.update(true);
        assert_eq!((scaler.scale, scaler.growth_tracker), (131072.0, 0));
        let _ = w.grad().fill_(f64::INFINITY);
        assert!(!scaler.unscale(&params));
        scaler.update(false);
        assert_eq!(scaler.scale, 65536.0);
    }

    #[test]
    fn bf16_guard_on_cpu_computes_matmul_in_bf16_until_dropped() {
        assert_eq!(matmul_kind(), Kind::Float);
        {
            let _guard = AutocastGuard::enter(Precision::Bf16, Device::Cpu).unwrap();
            assert_eq!(matmul_kind(), Kind::BFloat16);
            assert_eq!(
                AutocastGuard::active(Device::Cpu).unwrap(),
                Some(Kind::BFloat16)
            );
            // Ops on autocast's f32 list (losses among them) compute in f32.
            let y = Tensor::ones([4, 4], tch::kind::FLOAT_CPU)
                .matmul(&Tensor::eye(4, tch::kind::FLOAT_CPU));
            assert_eq!(y.mse_loss(&y, tch::Reduction::Mean).kind(), Kind::Float);
        }
        assert_eq!(matmul_kind(), Kind::Float);
        assert_eq!(AutocastGuard::active(Device::Cpu).unwrap(), None);
        let y = run(Precision::Bf16, Device::Cpu, matmul_kind).unwrap();
        assert_eq!((y, matmul_kind()), (Kind::BFloat16, Kind::Float));
    }

    #[test]
    fn nested_guards_restore_the_enclosing_state() {
        let outer = AutocastGuard::enter(Precision::Bf16, Device::Cpu).unwrap();
        {
            let _off = AutocastGuard::enter(Precision::F32, Device::Cpu).unwrap();
            assert_eq!(matmul_kind(), Kind::Float);
            {
                let _again = AutocastGuard::enter(Precision::Bf16, Device::Cpu).unwrap();
                assert_eq!(matmul_kind(), Kind::BFloat16);
            }
            assert_eq!(matmul_kind(), Kind::Float);
        }
        assert_eq!(matmul_kind(), Kind::BFloat16);
        // The CUDA setting is separate (thread-local state only: no GPU needed to set it).
        let cuda = Device::Cuda(0);
        let before = AutocastGuard::active(cuda).unwrap();
        {
            let _f16 = AutocastGuard::enter(Precision::F16, cuda).unwrap();
            assert_eq!(AutocastGuard::active(cuda).unwrap(), Some(Kind::Half));
            {
                let _bf16 = AutocastGuard::enter(Precision::Bf16, cuda).unwrap();
                assert_eq!(AutocastGuard::active(cuda).unwrap(), Some(Kind::BFloat16));
            }
            assert_eq!(AutocastGuard::active(cuda).unwrap(), Some(Kind::Half));
            assert_eq!(matmul_kind(), Kind::BFloat16, "CPU state untouched");
        }
        assert_eq!(AutocastGuard::active(cuda).unwrap(), before);
        drop(outer);
        assert_eq!(matmul_kind(), Kind::Float);
    }

    #[test]
    fn autocast_is_per_thread() {
        let _guard = AutocastGuard::enter(Precision::Bf16, Device::Cpu).unwrap();
        let other = std::thread::spawn(matmul_kind).join().unwrap();
        assert_eq!((matmul_kind(), other), (Kind::BFloat16, Kind::Float));
    }

    #[test]
    fn unsupported_combinations_are_errors() {
        let f16_cpu = AutocastGuard::enter(Precision::F16, Device::Cpu).unwrap_err();
        assert!(matches!(f16_cpu, AutocastError::Unsupported { .. }));
        assert!(AutocastGuard::enter(Precision::Bf16, Device::Mps).is_err());
        assert_eq!(matmul_kind(), Kind::Float, "a failed enter changes nothing");
    }

    #[test]
    fn precisions_parse_and_describe_themselves() {
        assert_eq!(Precision::parse("bf16"), Some(Precision::Bf16));
        assert_eq!(Precision::parse("fp16"), Some(Precision::F16));
        assert_eq!(Precision::parse("fp32"), Some(Precision::F32));
        assert_eq!(Precision::parse("f64"), None);
        assert_eq!(Precision::Bf16.autocast_kind(), Some(Kind::BFloat16));
        assert!(Precision::F16.needs_loss_scaling() && !Precision::Bf16.needs_loss_scaling());
    }
}
