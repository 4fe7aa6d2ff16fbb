//! The crate layering, checked on the real dependency graph (`cargo tree -e normal`): the
//! vocabulary, the configuration loader and the model maths link no IO crate, the media layer
//! knows nothing of ONNX Runtime, the model runtime nothing of FFmpeg, the analysis of one video
//! nothing of the services' infrastructure or the worker, and the CLI neither the worker nor
//! the infrastructure clients.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates that do IO or bring a runtime: what the pure layers must not link.
const IO_CRATES: &[&str] = &["tokio", "sqlx", "lapin", "aws-sdk-s3", "reqwest", "hyper", "axum", "prometheus", "ffmpeg-next", "ort", "tokenizers"];

/// Every crate `package` links in normal (non-dev, non-build) builds, by name.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package])
        .current_dir(reelq_tests::workspace_root())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

fn assert_links_none(package: &str, forbidden: &[&str]) {
    let deps = normal_dependencies(package);
    assert!(deps.contains(package), "cargo tree lists the package itself: {deps:?}");
    let found: Vec<&&str> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(found.is_empty(), "{package} must not link {found:?}");
}

#[test]
fn core_links_no_io_crate() {
    assert_links_none("reelq-core", IO_CRATES);
}

#[test]
fn learn_links_no_io_crate() {
    assert_links_none("reelq-learn", IO_CRATES);
}

#[test]
fn settings_loader_links_no_io_crate() {
    assert_links_none("reelq-settings", IO_CRATES);
}

/// The services' infrastructure: what the analysis of one video and the CLI's local run must
/// not link.
const INFRASTRUCTURE: &[&str] = &["reelq-shared", "reelq-worker", "reelq-api", "reelq-scheduler", "sqlx", "lapin", "aws-sdk-s3", "axum", "prometheus"];

#[test]
fn analysis_never_depends_on_shared_or_the_worker() {
    assert_links_none("reelq-analysis", INFRASTRUCTURE);
    let deps = normal_dependencies("reelq-analysis");
    assert!(deps.contains("reelq-media") && deps.contains("reelq-inference"), "the pipeline runs on both layers: {deps:?}");
}

#[test]
fn the_cli_runs_the_analysis_crate_never_the_worker_or_the_infrastructure_clients() {
    assert_links_none("reelq-cli", INFRASTRUCTURE);
    assert!(normal_dependencies("reelq-cli").contains("reelq-analysis"));
}

#[test]
fn media_knows_nothing_of_onnx_runtime_or_the_services() {
    assert_links_none("reelq-media", &["ort", "tokenizers", "reelq-shared", "reelq-worker", "sqlx", "lapin", "aws-sdk-s3", "axum", "tokio"]);
    assert!(normal_dependencies("reelq-media").contains("ffmpeg-next"), "the media layer is where FFmpeg is linked");
}

#[test]
fn inference_knows_nothing_of_ffmpeg_or_the_services() {
    assert_links_none("reelq-inference", &["ffmpeg-next", "reelq-media", "reelq-shared", "reelq-worker", "sqlx", "lapin", "aws-sdk-s3", "axum"]);
    assert!(normal_dependencies("reelq-inference").contains("ort"), "the model runtime is where ONNX Runtime is linked");
}

/// The workspace packages that name `dependency` in their own manifest.
fn direct_dependents(dependency: &str) -> Vec<String> {
    let metadata = Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--no-deps", "--format-version", "1"])
        .current_dir(reelq_tests::workspace_root())
        .output()
        .expect("cargo runs");
    assert!(metadata.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("json");
    doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["dependencies"].as_array().is_some_and(|d| d.iter().any(|d| d["name"] == dependency)))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn ffmpeg_and_onnx_runtime_are_each_linked_by_one_crate() {
    // The other crates reach them through reelq-media and reelq-inference; a direct dependency
    // would bypass the layer.
    assert_eq!(direct_dependents("ffmpeg-next"), vec!["reelq-media".to_owned()]);
    assert_eq!(direct_dependents("ort"), vec!["reelq-inference".to_owned()]);
    assert_eq!(direct_dependents("tokenizers"), vec!["reelq-inference".to_owned()]);
}
