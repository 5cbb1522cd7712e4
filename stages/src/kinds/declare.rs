//! How a kind is written: [`kind!`] declares it (name, version, doc, outputs, typed
//! parameters and input slots) and generates its [`Stage`] impl; the kind's module then
//! holds only `fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError>`.
//!
//! ```text
//! kind! {
//!     /// procedural tissue-like demo images for the 9 CRC classes, as PNG class folders
//!     Demo("data/demo", version: 1) -> [folder] {
//!         /// images per class
//!         per_class: usize = range(1..=100_000).default(50),
//!         /// seed; every image is a function of (seed, class, index)
//!         seed: u64 = range(0..).default(0),
//!     }
//!     inputs {
//!         /// an upstream class-folder directory
//!         folder: Optional,
//!     }
//! }
//! ```
//!
//! Each parameter is a field `name: Type = declaration` (see [`params`](super::params)):
//! the name is the field's, the type the Rust type's, the doc the doc comment's (its lines
//! joined), so the spec and the struct cannot disagree. `..name: Group = Group::specs(…)`
//! flattens a [`param_group!`] shared by several kinds; doc lines `member: text` on it set
//! those members' docs for this kind. `resumable` after the version marks a kind that
//! checkpoints. Slots are `One` (required), `Many` (a required list), `Optional` or `Any`
//! (an optional list).
//!
//! [`Stage`]: histodiff_engine::stage::Stage

use histodiff_engine::registry::SlotSpec;

/// How many artifacts an input slot takes, and whether it must be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    One,
    Many,
    Optional,
    Any,
}

/// The spec of input slot `name`.
pub fn slot(name: &str, arity: Arity, doc: &[&str]) -> SlotSpec {
    SlotSpec {
        name: name.into(),
        required: matches!(arity, Arity::One | Arity::Many),
        many: matches!(arity, Arity::Many | Arity::Any),
        doc: super::params::doc_text(doc),
    }
}

/// `resumable` or nothing, as a bool.
macro_rules! resumable {
    () => {
        false
    };
    (resumable) => {
        true
    };
}
pub(crate) use resumable;

/// A struct of parameters with `specs(args) -> Vec<ParamSpec>`; see the module doc.
macro_rules! param_group {
    (@field $head:tt [$($fields:tt)*] [$($specs:tt)*]
        $(#[doc = $doc:literal])* ..$field:ident: $ty:ty = $group:expr $(, $($rest:tt)*)?
    ) => {
        $crate::kinds::declare::param_group!(@field $head
            [$($fields)* $(#[doc = $doc])* #[serde(flatten)] pub $field: $ty,]
            [$($specs)* $crate::kinds::params::group($group, &[$($doc),*]),]
            $($($rest)*)?);
    };
    (@field $head:tt [$($fields:tt)*] [$($specs:tt)*]
        $(#[doc = $doc:literal])* $field:ident: $ty:ty = $decl:expr $(, $($rest:tt)*)?
    ) => {
        $crate::kinds::declare::param_group!(@field $head
            [$($fields)* $(#[doc = $doc])* pub $field: $ty,]
            [$($specs)* $crate::kinds::params::param::<$ty>(stringify!($field), &[$($doc),*], $decl),]
            $($($rest)*)?);
    };
    (@field [$(#[doc = $doc:literal])* $vis:vis struct $name:ident($($arg:ident: $argty:ty),*)]
        [$($fields:tt)*] [$($specs:tt)*]
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, ::serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $vis struct $name {
            $($fields)*
        }

        impl $name {
            /// The spec's parameters, one per field (a group's in its place), in order.
            pub fn specs($($arg: $argty),*) -> Vec<::histodiff_engine::registry::ParamSpec> {
                let parts: Vec<Vec<::histodiff_engine::registry::ParamSpec>> = vec![$($specs)*];
                parts.concat()
            }
        }
    };
    (
        $(#[doc = $doc:literal])*
        $vis:vis struct $name:ident($($arg:ident: $argty:ty),* $(,)?) { $($body:tt)* }
    ) => {
        $crate::kinds::declare::param_group!(@field
            [$(#[doc = $doc])* $vis struct $name($($arg: $argty),*)] [] [] $($body)*);
    };
}
pub(crate) use param_group;

/// A stage kind: its unit struct, `Params`, and the `Stage` impl; see the module doc.
macro_rules! kind {
    (
        $(#[doc = $doc:literal])*
        $kind:ident($name:literal, version: $version:literal $(, $flag:ident)?)
            -> [$($output:ident),* $(,)?] { $($params:tt)* }
        $(inputs {
            $($(#[doc = $slot_doc:literal])* $slot:ident: $arity:ident),* $(,)?
        })?
    ) => {
        $(#[doc = $doc])*
        pub struct $kind;

        $crate::kinds::declare::param_group! {
            /// The kind's parameters, typed; its spec's parameter list is made from them.
            pub struct Params() { $($params)* }
        }

        impl Params {
            /// The job's parameters, checked against the spec.
            pub fn from_ctx(
                ctx: &::histodiff_engine::stage::StageContext,
            ) -> Result<Self, ::histodiff_engine::stage::StageError> {
                $crate::kinds::params::from_job(&ctx.job, &Self::specs())
            }
        }

        impl ::histodiff_engine::stage::Stage for $kind {
            fn spec(&self) -> ::histodiff_engine::registry::KindSpec {
                ::histodiff_engine::registry::KindSpec {
                    name: $name.into(),
                    version: $version,
                    params: Params::specs(),
                    inputs: vec![$($($crate::kinds::declare::slot(
                        stringify!($slot),
                        $crate::kinds::declare::Arity::$arity,
                        &[$($slot_doc),*],
                    )),*)?],
                    outputs: vec![$(stringify!($output).into()),*],
                    resumable: $crate::kinds::declare::resumable!($($flag)?),
                    doc: $crate::kinds::params::doc_text(&[$($doc),*]),
                }
            }

            fn run(
                &self,
                ctx: &mut ::histodiff_engine::stage::StageContext,
            ) -> Result<(), ::histodiff_engine::stage::StageError> {
                let params = Params::from_ctx(ctx)?;
                run(ctx, params)
            }
        }
    };
}
pub(crate) use kind;
