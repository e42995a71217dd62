//! The Kubernetes API server: HTTPS, authentication, discovery, OpenAPI and the REST verbs of
//! every built-in kind, over the store.
//!
//! A request goes: `serve` (TLS, client certificate → [`User`]) → [`Api::handle`] (health,
//! discovery, OpenAPI, or a resource path) → `handlers` (one function per verb) → `admission`
//! (defaults, validation, allocators) → `storage` (objects as keys in the store). `status` is the
//! one place that turns errors into `metav1.Status`.

pub mod admission;
mod api;
pub mod apply;
pub mod convert;
pub mod crd;
pub use api::*;
pub mod defaults;
pub mod discovery;
pub mod eviction;
pub mod fields;
pub mod handlers;
pub mod local;
pub mod meta;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quota;
pub mod request;
pub mod resources;
pub mod reviews;
pub mod selector;
pub mod serve;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;
pub mod watch;
