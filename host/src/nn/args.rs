//! The graph store's options, flattened into `ember up`: when graphs load and when idle ones
//! unload (scale to zero), and the task that unloads them.

use std::time::Duration;

use super::registry::GraphStore;

/// When graphs load and unload.
#[derive(clap::Args, Debug, Clone)]
pub struct NnArgs {
    /// Unload a model's graph, and drop warm instances, after this many seconds without use
    /// (reloaded on next use).
    #[arg(long, default_value_t = 300.0)]
    pub idle_unload: f64,
    /// Load every graph at start instead of on first use.
    #[arg(long)]
    pub preload: bool,
}

impl NnArgs {
    /// How long a graph (and an instance holding it) may go unused before it is unloaded.
    pub fn idle(&self) -> Duration {
        Duration::from_secs_f64(self.idle_unload)
    }

    /// Unloads graphs idle longer than `--idle-unload`, checking a few times per period; runs
    /// until dropped.
    pub async fn unload_idle_graphs(&self, graphs: &GraphStore) {
        let idle = self.idle();
        let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            tokio::time::sleep(period).await;
            for graph in graphs.evict_idle(idle) {
                tracing::info!(%graph, "graph unloaded (idle)");
            }
        }
    }
}
