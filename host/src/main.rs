use clap::Parser;
use portico::config::{Cli, Command};
use portico::conformance;
use portico::runtime::{PluginRuntime, RuntimeConfig};

// Requests allocate many small short-lived buffers; mimalloc's thread-local
// free lists serve them at a fraction of glibc malloc's cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Held to the end of main: dropping it flushes exported traces.
    let _logging = portico::telemetry::logging::init(cli.log_format);
    match cli.command {
        Some(Command::CheckPlugin { files }) => check_plugins(&files).await,
        None => portico::server::run(cli).await,
    }
}

/// `portico check-plugin FILE...`: the conformance check a plugin author
/// runs on their own build. Plugins get no network while checked.
async fn check_plugins(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let runtime = PluginRuntime::new(RuntimeConfig::default(), conformance::offline_http_client())?;
    let mut failed = 0;
    for file in files {
        let report = conformance::check_plugin(&runtime, file).await;
        println!("{}\n{report}", file.display());
        if !report.passed() {
            failed += 1;
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} plugin(s) failed the conformance check",
        files.len()
    );
    Ok(())
}
