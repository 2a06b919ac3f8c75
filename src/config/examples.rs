//! The example site shipped inside the binary, so `commune-ioc demo` and
//! `commune-ioc simulate` work from any directory without a config file.

use super::{load::env_overrides, load_str, Config, ConfigError};

/// `config/examples/binh-lu.toml`, as built into the binary.
pub const BINH_LU: &str = include_str!("../../config/examples/binh-lu.toml");

/// How errors in the embedded example name it.
pub const BINH_LU_ORIGIN: &str = "config/examples/binh-lu.toml (embedded)";

/// The embedded Bình Lư example with the process's `IOC__*` overrides.
pub fn binh_lu() -> Result<Config, ConfigError> {
    load_str(BINH_LU, BINH_LU_ORIGIN, &env_overrides())
}
