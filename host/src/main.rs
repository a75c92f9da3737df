use clap::Parser;
use portico::config::{Cli, Command, LogFormat};
use portico::conformance;
use portico::runtime::{PluginRuntime, RuntimeConfig};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
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
