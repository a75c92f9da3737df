//! Command line and the declarative endpoints file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde::Deserialize;

use crate::endpoints::EndpointDef;

/// Portico: an LLM gateway with sandboxed WebAssembly provider plugins.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "PORTICO_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Folder of provider plugins (`*.wasm`), watched for changes.
    #[arg(long, env = "PORTICO_PLUGINS_DIR", default_value = "plugins")]
    pub plugins_dir: PathBuf,
    /// Declarative endpoints file (TOML), applied to the endpoint store at
    /// start and whenever it changes. Defaults to ./portico.toml.
    #[arg(long, env = "PORTICO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for the gateway's own state: the endpoint database
    /// (portico.db), the master key file (master.key, unless
    /// PORTICO_MASTER_KEY is set) and the compiled-plugin cache.
    #[arg(long, env = "PORTICO_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// When set, every /api/v1 request needs `Authorization: Bearer <token>`.
    /// A token may start with `-` (one URL-safe random token in 64 does).
    #[arg(
        long,
        env = "PORTICO_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
    /// Require a gateway key (created with /api/v1/keys or the UI) on every
    /// /gateway request; off, any API key is accepted.
    #[arg(long, env = "PORTICO_REQUIRE_KEYS")]
    pub require_keys: bool,
    /// Largest accepted request body, in bytes (larger ones get 413).
    #[arg(long, env = "PORTICO_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Upstream connect timeout, in seconds.
    #[arg(long, env = "PORTICO_CONNECT_TIMEOUT", default_value_t = 10)]
    pub connect_timeout_secs: u64,
    /// PEM file of certificate authorities to trust for HTTPS upstreams (and
    /// plugins' http-fetch) in addition to Mozilla's public roots: for
    /// providers reached through a private CA or a TLS-inspecting proxy.
    #[arg(long, env = "PORTICO_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,
    /// Upstream request timeout for non-streaming calls (and the wait for
    /// the first byte of streaming ones), in seconds.
    #[arg(long, env = "PORTICO_REQUEST_TIMEOUT", default_value_t = 600)]
    pub request_timeout_secs: u64,
    /// Days to keep stored Responses API conversations (`previous_response_id`).
    #[arg(long, env = "PORTICO_RESPONSE_RETENTION_DAYS", default_value_t = 30)]
    pub response_retention_days: u64,
    /// Days to keep the request log (usage and cost per request; message
    /// contents are never logged).
    #[arg(long, env = "PORTICO_REQUEST_LOG_RETENTION_DAYS", default_value_t = 30)]
    pub request_log_retention_days: u64,
    /// On SIGTERM or Ctrl-C, seconds to let in-flight requests and streams
    /// finish after the listener closes; what is still running then is cut.
    #[arg(long, env = "PORTICO_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Threads serving HTTP, each with its own event loop and listening
    /// socket, so a request runs start to end on one thread (0: one per
    /// CPU core).
    #[arg(long, env = "PORTICO_SERVE_THREADS", default_value_t = 0)]
    pub serve_threads: usize,
    /// Seconds a pooled plugin instance may stay unused before it is
    /// dropped, giving back the memory a burst of concurrent calls pinned
    /// (the most recently used instance of each plugin is kept).
    #[arg(long, env = "PORTICO_PLUGIN_IDLE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub plugin_idle_secs: u64,
    /// Requests each provider plugin may have in flight (a stream until
    /// its end, holding a sandboxed instance all along). Past it a request
    /// waits up to --plugin-busy-wait-ms for one to end, then gets 503
    /// (fallback targets, if any, are tried), so a flood of slow streams
    /// cannot exhaust memory.
    #[arg(long, env = "PORTICO_PLUGIN_MAX_CONCURRENCY", default_value_t = 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub plugin_max_concurrency: usize,
    /// Milliseconds a request waits at most for a place under
    /// --plugin-max-concurrency before its 503 (0: refused at once). The
    /// wait counts against the endpoint's attempt and total timeouts.
    #[arg(long, env = "PORTICO_PLUGIN_BUSY_WAIT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub plugin_busy_wait_ms: u64,
    /// Log format on stderr.
    #[arg(long, env = "PORTICO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Commands other than serving (the default).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run the plugin conformance check on .wasm files (exit 1 on failure).
    CheckPlugin {
        /// Plugin components to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// The endpoints file. It need not exist: a missing file declares no
    /// endpoints, and creating it later applies it.
    pub fn config_file(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from("portico.toml"))
    }

    /// The admin token, if one is set (an empty value means none).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|t| !t.is_empty())
    }
}

/// The declarative file: `[[endpoints]]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    endpoints: Vec<EndpointEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointEntry {
    name: String,
    /// Omitted for a router endpoint (one with `policy.targets`).
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// `[endpoints.policy]`: targets, fallbacks, retry, timeouts,
    /// circuit_breaker, limits.
    #[serde(default)]
    policy: crate::policy::EndpointPolicy,
}

/// Reads the endpoints file, replacing `${VAR}` references with environment
/// variables so secrets stay out of the file. A missing file is an error
/// whose cause is the `std::io::Error` (`NotFound`).
pub fn load_endpoints(path: &Path) -> anyhow::Result<Vec<EndpointDef>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading endpoints file {}", path.display()))?;
    parse_endpoints(&text, |name| std::env::var(name).ok())
        .with_context(|| format!("in endpoints file {}", path.display()))
}

fn parse_endpoints(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<EndpointDef>> {
    let file: ConfigFile = toml::from_str(text)?;
    let mut seen = std::collections::HashSet::new();
    file.endpoints
        .into_iter()
        .map(|entry| {
            anyhow::ensure!(
                !entry.name.trim().is_empty(),
                "an endpoint has an empty name"
            );
            anyhow::ensure!(
                seen.insert(entry.name.clone()),
                "endpoint '{}' is declared twice",
                entry.name
            );
            let config = entry
                .config
                .into_iter()
                .map(|(key, value)| {
                    let value = expand_env(&value, &env)
                        .with_context(|| format!("endpoint '{}', config '{key}'", entry.name))?;
                    Ok((key, value))
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(EndpointDef {
                name: entry.name,
                provider: entry.provider,
                model: entry.model,
                config,
                policy: entry.policy,
            })
        })
        .collect()
}

/// Replaces every `${NAME}` with the variable's value; an unset variable is
/// an error rather than a silently empty secret.
fn expand_env(value: &str, env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow::anyhow!("unterminated ${{...}} reference"))?;
        let name = &after[..end];
        let resolved =
            env(name).ok_or_else(|| anyhow::anyhow!("environment variable {name} is not set"))?;
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "sk-secret".to_string())
    }

    #[test]
    fn an_admin_token_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from([
            "portico",
            "--admin-token",
            "-CARGQkfVxsgAD",
            "--listen",
            "127.0.0.1:1",
        ])
        .expect("a token starting with '-' is a value, not a flag");
        assert_eq!(cli.admin_token(), Some("-CARGQkfVxsgAD"));
        assert_eq!(cli.listen.port(), 1);
    }

    #[test]
    fn parses_endpoints_and_expands_env_references() {
        let defs = parse_endpoints(
            r#"
            [[endpoints]]
            name = "chat"
            provider = "openai"
            model = "gpt-4o-mini"
            [endpoints.config]
            api_key = "${KEY}"
            base_url = "http://127.0.0.1:9/v1"
            "#,
            env,
        )
        .unwrap();
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].config["api_key"], "sk-secret");
        assert_eq!(defs[0].config["base_url"], "http://127.0.0.1:9/v1");
    }

    #[test]
    fn parses_policy_tables() {
        let defs = parse_endpoints(
            r#"
            [[endpoints]]
            name = "router"
            [endpoints.policy]
            fallbacks = ["c"]
            [[endpoints.policy.targets]]
            endpoint = "a"
            weight = 3
            [[endpoints.policy.targets]]
            endpoint = "b"
            [endpoints.policy.retry]
            max_attempts = 2
            [endpoints.policy.circuit_breaker]
            failure_threshold = 4
            "#,
            env,
        )
        .unwrap();
        let policy = &defs[0].policy;
        assert_eq!(defs[0].provider, "");
        assert_eq!(policy.targets.len(), 2);
        assert_eq!((policy.targets[0].weight, policy.targets[1].weight), (3, 1));
        assert_eq!(policy.fallbacks, ["c"]);
        assert_eq!(policy.retry.max_attempts, 2);
        assert_eq!(policy.circuit_breaker.unwrap().failure_threshold, 4);
        let typo = "[[endpoints]]\nname='a'\n[endpoints.policy]\nretries=2";
        assert!(parse_endpoints(typo, env).is_err());
    }

    #[test]
    fn unset_variable_duplicate_and_unknown_keys_are_errors() {
        let unset =
            "[[endpoints]]\nname='a'\nprovider='openai'\nmodel='m'\nconfig={api_key='${NOPE}'}";
        assert!(format!("{:#}", parse_endpoints(unset, env).unwrap_err()).contains("NOPE"));
        let twice = "[[endpoints]]\nname='a'\nprovider='p'\nmodel='m'\n[[endpoints]]\nname='a'\nprovider='p'\nmodel='m'";
        assert!(
            parse_endpoints(twice, env)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(
            parse_endpoints(
                "[[endpoints]]\nname='a'\nprovider='p'\nmodel='m'\ncolour=1",
                env
            )
            .is_err()
        );
    }
}
