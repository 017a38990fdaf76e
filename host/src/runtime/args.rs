//! The runtime's options, flattened into `ember up`: where compiled components are cached and the
//! sandbox's limits.

use std::path::PathBuf;
use std::time::Duration;

/// Where compiled components are cached unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = ".ember/cache";

/// How the runtime sandboxes the function.
#[derive(clap::Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Where compiled components are cached between runs.
    #[arg(long, default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Per-request deadline in milliseconds (504 past it).
    #[arg(long, default_value_t = 5000)]
    pub deadline_ms: u64,
    /// Per-instance linear memory limit in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_limit_mib: usize,
    /// Instances alive at once; further requests wait for a slot (up to the deadline).
    #[arg(long, default_value_t = 128)]
    pub max_instances: u32,
}

impl RuntimeArgs {
    /// Longest a request may run.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Largest linear memory per instance, in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit_mib.saturating_mul(1024 * 1024)
    }
}
