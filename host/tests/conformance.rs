//! Every provider plugin in the repository's plugins folder must pass the
//! conformance check, and broken plugins must fail it. Uses the built
//! plugins (run scripts/build-plugins first).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portico::conformance::{CHECK_NAMES, CheckStatus, check_plugin, offline_http_client};
use portico::runtime::{PluginRuntime, RuntimeConfig};

fn repo_dir(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn plugins_dir() -> PathBuf {
    std::env::var_os("PORTICO_CONFORMANCE_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir("plugins"))
}

fn test_plugin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PORTICO_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir("target/test-plugins"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "test plugin {} is missing: run scripts/build-plugins (or set PORTICO_TEST_PLUGINS)",
        path.display()
    );
    path
}

/// A runtime as `portico check-plugin` would use: the default sandbox
/// limits, no network, and a compiled-code cache kept between test runs
/// (debug-build compilation is slow).
fn runtime() -> Arc<PluginRuntime> {
    let config = RuntimeConfig {
        cache_dir: Some(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portico-conformance-cache"),
        ),
        ..RuntimeConfig::default()
    };
    PluginRuntime::new(config, offline_http_client()).expect("runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_in_the_plugins_dir_conforms() {
    let dir = plugins_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read plugins dir {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "wasm")
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no plugins/*.wasm in {}: run scripts/build-plugins first",
        dir.display()
    );

    let runtime = runtime();
    let mut failing = Vec::new();
    for file in &files {
        let report = check_plugin(&runtime, file).await;
        println!("{report}");
        assert_eq!(
            report.checks.iter().map(|c| c.name).collect::<Vec<_>>(),
            CHECK_NAMES,
            "every check is reported, in order"
        );
        // The plugin file is named after the provider id it describes.
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if let Some((id, _)) = &report.provider
            && id != stem
        {
            failing.push(format!(
                "{}: describes id '{id}', file is named '{stem}.wasm'",
                file.display()
            ));
        }
        if !report.passed() {
            failing.push(report.to_string());
        }
    }
    assert!(
        failing.is_empty(),
        "non-conforming plugins:\n{}",
        failing.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_with_an_invalid_describe_fails() {
    let report = check_plugin(&runtime(), &test_plugin("test-bad-describe")).await;
    assert!(!report.passed(), "{report}");
    assert_eq!(report.provider, None);
    let loads = report.check("loads").expect("loads check");
    assert_eq!(loads.status, CheckStatus::Failed);
    assert!(loads.message.contains("empty id"), "{}", loads.message);
    // Nothing else can run; those checks say so instead of passing.
    assert!(
        report.checks[1..]
            .iter()
            .all(|c| c.status == CheckStatus::Skipped && c.message.contains("did not load")),
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("[FAIL] loads") && text.contains("conformance FAILED"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_contract_and_non_components_fail_to_load() {
    let runtime = runtime();
    let report = check_plugin(&runtime, &test_plugin("test-bad-wit")).await;
    assert!(!report.passed());
    let loads = report.check("loads").expect("loads check");
    assert_eq!(loads.status, CheckStatus::Failed);
    assert!(
        loads.message.contains("incompatible WIT"),
        "{}",
        loads.message
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").expect("write");
    let report = check_plugin(&runtime, &junk).await;
    assert!(!report.passed());
    assert!(
        report
            .check("loads")
            .is_some_and(|c| c.message.contains("not a WebAssembly component"))
    );

    let report = check_plugin(&runtime, &dir.path().join("missing.wasm")).await;
    assert!(
        report
            .check("loads")
            .is_some_and(|c| c.status == CheckStatus::Failed && c.message.contains("cannot read"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_accepts_garbage_fails_exactly_that_check() {
    // test-echo answers any 2xx body by echoing it as the chat answer:
    // fine for runtime tests, wrong for a provider, and the checker must
    // single that out while the rest of its (valid) behaviour passes.
    let report = check_plugin(&runtime(), &test_plugin("test-echo")).await;
    println!("{report}");
    assert_eq!(report.provider, Some(("test-echo".into(), "1.0.0".into())));
    let failing: Vec<&str> = report.failures().map(|c| c.name).collect();
    assert_eq!(failing, ["garbage-input"], "{report}");
    let garbage = report.check("garbage-input").expect("garbage-input check");
    assert!(
        garbage
            .message
            .contains("parse_chat_response accepted garbage"),
        "{report}"
    );
    assert!(report.to_string().contains("[FAIL] garbage-input"));
}
