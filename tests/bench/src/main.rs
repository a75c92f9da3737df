//! Portico benchmark harness (run by `scripts/bench`).
//!
//! `portico-bench upstream --listen ADDR` runs the fake upstream;
//! `portico-bench run` starts the fake upstream, nginx and the gateway on
//! loopback, measures each scenario against the three in the same run, and
//! writes the markdown report. `portico-bench proxy` is a minimal hyper
//! reverse proxy, the floor of a Rust hop, for measuring by hand.

mod load;
mod procfs;
mod proxy;
mod run;
mod upstream;

use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage:\n  portico-bench upstream --listen ADDR [--chunks N] [--chunk-interval-us US] [--threads N]\n  portico-bench run   (configured by BENCH_* variables, see scripts/bench)\n  portico-bench load --url URL --body-file FILE [--rate N] [--secs S]\n  portico-bench proxy --listen ADDR --upstream ADDR [--threads N]"
    );
    std::process::exit(2)
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.first().map(String::as_str) {
        Some("upstream") => {
            let addr = flag("--listen").unwrap_or_else(|| usage()).parse()?;
            let config = upstream::UpstreamConfig {
                chunks: flag("--chunks")
                    .map(|v| v.parse())
                    .transpose()?
                    .unwrap_or(20),
                chunk_interval: Duration::from_micros(
                    flag("--chunk-interval-us")
                        .map(|v| v.parse())
                        .transpose()?
                        .unwrap_or(0),
                ),
            };
            let threads: usize = flag("--threads")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(1);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()?
                .block_on(upstream::serve(addr, config))
        }
        Some("run") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                // Dropping the run on a signal kills the processes it started.
                tokio::select! {
                    result = run::run() => result,
                    signal = interrupted() => anyhow::bail!("interrupted by {signal}"),
                }
            }),
        // One open-loop latency measurement against any URL, for profiling
        // a single hop by hand: `load --url URL --body-file F --rate N --secs S`.
        Some("load") => {
            let url = flag("--url").unwrap_or_else(|| usage());
            let body = std::fs::read(flag("--body-file").unwrap_or_else(|| usage()))?;
            let rate: f64 = flag("--rate")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(200.0);
            let secs: f64 = flag("--secs")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(5.0);
            let target = load::Target {
                url,
                body: body.into(),
                headers: vec![("content-type".into(), "application/json".into())],
            };
            let summary = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(load::fixed_rate(
                    target,
                    rate,
                    Duration::from_secs(1),
                    Duration::from_secs_f64(secs),
                ))
                .summary();
            println!("{summary:?}");
            Ok(())
        }
        Some("proxy") => {
            let listen = flag("--listen").unwrap_or_else(|| usage()).parse()?;
            let upstream = flag("--upstream").unwrap_or_else(|| usage()).parse()?;
            let threads = flag("--threads")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            proxy::serve(listen, upstream, threads)
        }
        _ => usage(),
    }
}
