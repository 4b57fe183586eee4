//! Kernel-facing code: the only place `unsafe` is allowed.
#![allow(unsafe_code)]
pub mod membership;
pub mod privilege;
