//! Linux containers from OCI images, started in-process with youki's libcontainer.
//!
//! Per container: a root filesystem stacked from the image's unpacked layers ([`rootfs`]).

pub mod rootfs;
