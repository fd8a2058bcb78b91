//! The wasmtime engine: pooling allocation, epoch interruption and the on-disk compile cache.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ProfilingStrategy,
};

/// How often the epoch advances. A guest that computes without yielding is interrupted at
/// the next tick so the timeout of its request (and everyone else's) can fire.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Compiled components are kept here so a restart does not compile again.
    pub cache_dir: Option<PathBuf>,
    /// Most component instances alive at once, across all components.
    pub max_instances: u32,
    /// Most bytes of linear memory one instance may use.
    pub max_instance_memory: usize,
    /// Name compiled guest functions in `/tmp/perf-<pid>.map`, so `perf` can attribute the
    /// guests' time instead of showing anonymous JIT code.
    pub perf_map: bool,
}

pub fn build(settings: &EngineSettings) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    if settings.perf_map {
        config.profiler(ProfilingStrategy::PerfMap);
    }

    // Instances come from preallocated slots: instantiation is a few memory maps, not
    // allocations, which is what makes an instance per request affordable.
    let n = settings.max_instances;
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n.saturating_mul(16))
        .max_memory_size(settings.max_instance_memory);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));

    if let Some(dir) = &settings.cache_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the compile cache {}", dir.display()))?;
        // wasmtime's cache wants an absolute path; the default is relative to the cwd.
        let dir = &std::path::absolute(dir)?;
        let mut cache = CacheConfig::new();
        cache.with_directory(dir.clone());
        let cache = Cache::new(cache)
            .map_err(|e| anyhow::anyhow!("opening the compile cache {}: {e}", dir.display()))?;
        config.cache(Some(cache));
    }
    Engine::new(&config).map_err(|e| anyhow::anyhow!("creating the wasmtime engine: {e}"))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
pub fn spawn_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    // Held weakly, so the ticker ends with the engine.
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".to_owned())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("starting the epoch ticker")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perf_map_names_the_compiled_guest_functions() -> anyhow::Result<()> {
        let engine = build(&EngineSettings {
            cache_dir: None,
            max_instances: 1,
            max_instance_memory: 1 << 20,
            perf_map: true,
        })?;
        let wat = r#"(component (core module (func $work) (export "work" (func $work))))"#;
        wasmtime::component::Component::new(&engine, wat)?;
        let path = format!("/tmp/perf-{}.map", std::process::id());
        let map = std::fs::read_to_string(&path)?;
        std::fs::remove_file(&path)?;
        assert!(
            map.lines().any(|line| line.ends_with(" work")),
            "no guest function in the perf map:\n{map}"
        );
        Ok(())
    }
}
