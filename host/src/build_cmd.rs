//! `edge build`: runs each component's `[component.<id>.build]` command, as `spin build`
//! does, in the component's `workdir` (or the manifest's folder).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use edge_app::schema::AppManifest;

/// Builds the components named in `only` (all when empty).
pub fn run(manifest_path: &Path, only: &[String]) -> anyhow::Result<()> {
    let manifest = AppManifest::from_file(manifest_path)?;
    let app_dir = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Some(unknown) = only
        .iter()
        .find(|id| !manifest.components.contains_key(id.as_str()))
    {
        bail!("no component `{unknown}` in {}", manifest_path.display());
    }
    for (id, spec) in &manifest.components {
        let id = id.to_string();
        if !only.is_empty() && !only.contains(&id) {
            continue;
        }
        let Some(build) = &spec.build else {
            tracing::info!(component = %id, "no build command; skipped");
            continue;
        };
        let workdir = build
            .workdir
            .clone()
            .unwrap_or_else(|| app_dir.to_path_buf());
        for command in &build.commands {
            println!("Building component {id} with `{command}`");
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&workdir)
                .status()
                .with_context(|| format!("running the build command of `{id}`"))?;
            if !status.success() {
                bail!("building component `{id}` failed ({status})");
            }
        }
    }
    println!("Finished building all components");
    Ok(())
}
