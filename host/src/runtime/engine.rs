//! The wasmtime engine Ember runs functions on: pooling allocator (copy-on-write memory images),
//! epoch interruption for deadlines, and a ticker that advances the epoch.

use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

use super::RuntimeArgs;

/// How often the epoch advances: the granularity of deadlines and of time slices.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Environment variable that, set to `perfmap`, makes the engine write `/tmp/perf-<pid>.map`, so
/// `perf report` names the guest's functions (README, "Benchmark").
pub const PROFILER_ENV: &str = "EMBER_WASM_PROFILER";

/// Bytes of each linear memory and async stack kept resident between instances.
const KEEP_RESIDENT: usize = 64 << 10;

/// Bytes of each function table kept resident between instances: the embedded build's table
/// (~16k entries, ~126 KB) whole. A table handed back to the kernel is faulted in again slot by
/// slot as the next instance calls through it — read, then written, each write a TLB flush on
/// every core (docs/benchmarks.md, the embedded build on `wasmtime serve`); zeroing it costs less.
const TABLE_KEEP_RESIDENT: usize = 256 << 10;

/// Builds the engine for `limits` (pool slots, memory) and starts its epoch ticker; `fuel` counts
/// guest instructions for metering.
pub fn build(limits: &RuntimeArgs, fuel: bool) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    // Running instances plus as many warm ones waiting for their callers (runtime/pool.rs).
    let n = limits.max_instances * 2;
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 4)
        // A store keeps the async stack of its last call for the next one, so warm instances
        // waiting for their callers hold one each, as running ones do.
        .total_stacks(n)
        // The ResourceLimiter enforces `memory_limit` (and reports it); the pool allows headroom
        // so the limiter, not the pool, is what refuses growth.
        .max_memory_size(limits.memory_limit().saturating_mul(2))
        // Reused slots keep their first pages resident (reset with memset, not madvise), so a
        // warm instance does not page-fault its stack and heap back in on every request.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .async_stack_keep_resident(KEEP_RESIDENT)
        .decommit_batch_size(32);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(fuel)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true);
    match std::env::var(PROFILER_ENV).as_deref() {
        Ok("perfmap") => {
            config.profiler(ProfilingStrategy::PerfMap);
        }
        Ok(other) => tracing::warn!(
            value = other,
            "{PROFILER_ENV} is ignored: the only profiler it selects is `perfmap`"
        ),
        Err(_) => {}
    }
    let engine = Engine::new(&config)?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("ember-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}
