//! Containers: building what the runtime needs (OCI spec, rootfs), and the container lifecycle.
pub mod lifecycle;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod user;
