//! imgsvc: an embeddable container image service.
//!
//! It does on one machine what the image side of a CRI runtime does: list,
//! status, pull (with progress), remove and filesystem usage of OCI and
//! Docker images, into a local store that is a valid OCI image layout.
//!
//! [`Service`] is the async core; [`BlockingService`] owns a tokio runtime
//! and offers the same verbs to synchronous callers (the C ABI, Python, the
//! CLI). Module map: `reference` parses names, `registry` talks HTTP,
//! `manifest` understands documents, `pull` runs downloads, `store` owns the
//! disk (blobs and the index), `unpack` turns a layer blob into files,
//! `layers` keeps the unpacked layers, `export` merges them into a root
//! filesystem, `catalog` turns the layout's index into CRI images, `service`
//! applies CRI semantics, `writeback` starts flushing big writes early.

#![deny(unsafe_code)]

mod blocking;
mod catalog;
mod error;
mod export;
mod failpoint;
mod fsck;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod json;
mod layers;
mod manifest;
mod pull;
mod reference;
mod registry;
mod service;
mod store;
mod types;
mod unpack;
mod writeback;

pub use blocking::BlockingService;
pub use error::{Error, ErrorKind, Result};
pub use fsck::FsckReport;
pub use manifest::user_to_uid;
pub use pull::CancelToken;
pub use reference::Reference;
pub use service::Service;
pub use types::{
    Auth, FilesystemUsage, Image, ImageStatus, Options, Progress, RegistryOptions, DEFAULT_MAX_LAYER_BYTES,
};
