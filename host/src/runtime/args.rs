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
    /// Instances running at once; further requests wait for a slot (up to the deadline). As many
    /// more may wait warm for their caller's next request.
    #[arg(long, default_value_t = 128)]
    pub max_instances: u32,
    /// Requests one instance serves, one at a time and for one caller only, before it is dropped
    /// (also after any trap, deadline or memory-limit hit); 1 gives every request a fresh instance.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub instance_reuse: u32,
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
