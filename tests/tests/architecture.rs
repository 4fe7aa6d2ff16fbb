//! The crate layering, checked on the real dependency graph (`cargo tree -e normal`): the
//! vocabulary links no IO crate, and the media layer knows nothing of ONNX Runtime or of the
//! services' infrastructure.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates that do IO or bring a runtime: what the pure layers must not link.
const IO_CRATES: &[&str] =
    &["tokio", "sqlx", "lapin", "aws-sdk-s3", "reqwest", "hyper", "axum", "prometheus", "ffmpeg-next", "ort", "tokenizers"];

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
fn media_knows_nothing_of_onnx_runtime_or_the_services() {
    assert_links_none("reelq-media", &["ort", "tokenizers", "reelq-shared", "reelq-worker", "sqlx", "lapin", "aws-sdk-s3", "axum", "tokio"]);
    assert!(normal_dependencies("reelq-media").contains("ffmpeg-next"), "the media layer is where FFmpeg is linked");
}

#[test]
fn only_the_media_layer_links_ffmpeg_directly() {
    // The other crates reach FFmpeg through reelq-media; a direct dependency would bypass it.
    let metadata = Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--no-deps", "--format-version", "1"])
        .current_dir(reelq_tests::workspace_root())
        .output()
        .expect("cargo runs");
    assert!(metadata.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("json");
    let direct: Vec<String> = doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["dependencies"].as_array().is_some_and(|d| d.iter().any(|d| d["name"] == "ffmpeg-next")))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(direct, vec!["reelq-media".to_owned()]);
}
