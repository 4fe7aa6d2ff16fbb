//! The creators' page: served publicly with a strict policy, and driven end to end in a real
//! browser (Debian's Chromium through playwright-core, `tests/browser/page.test.mjs`).

use std::path::PathBuf;
use std::time::Duration;

use reelq_shared::catalogue::{CATALOGUE, Offer, Visibility};
use reelq_tests::{TestApp, TestEnv, TestWorker, count, make_clip, workspace_root};

/// A vertical clip with on-screen text and spoken English (espeak-ng), so that text, speech and
/// hashtag analyses all have something to find.
fn spoken_clip() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("speech.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w", &wav.display().to_string(), "Tonight I am cooking pasta in my kitchen. This recipe takes ten minutes."])
        .status()
        .expect("espeak-ng is installed (scripts/test installs it)");
    assert!(status.success());
    let draw = "color=white:s=360x640:r=25:d=6,drawtext=text='Easy pasta recipe':fontsize=32:fontcolor=black:x=20:y=300";
    make_clip(
        &[
            "-f",
            "lavfi",
            "-i",
            draw,
            "-i",
            &wav.display().to_string(),
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
        "mp4",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_and_assets_are_public_cached_and_locked_down() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let http = reqwest::Client::new();

    let page = http.get(app.url("/")).send().await.expect("sent");
    assert_eq!(page.status(), 200, "no key needed");
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    assert!(csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.expect("html");
    let start = html.find("/assets/").expect("asset folder named");
    let folder: String = html[start..].chars().take_while(|c| *c != '"').collect::<String>();
    let folder = folder.rsplit_once('/').expect("a file in the folder").0.to_owned();
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from another origin");

    for (file, ct) in [("app.js", "text/javascript"), ("api.js", "text/javascript"), ("render.js", "text/javascript"), ("style.css", "text/css")] {
        let resp = http.get(app.url(&format!("{folder}/{file}"))).send().await.expect("sent");
        assert_eq!(resp.status(), 200, "{file}");
        assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with(ct), "{file}");
        assert_eq!(resp.headers()["cache-control"], "public, max-age=31536000, immutable", "{file}");
    }
    let stale = http.get(app.url("/assets/000000000000/app.js")).send().await.expect("sent");
    assert_eq!(stale.status(), 200, "an old page still gets the current file");
    assert_eq!(stale.headers()["cache-control"], "no-cache", "but not cached under the old name");
    let missing = http.get(app.url(&format!("{folder}/nope.js"))).send().await.expect("sent");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creators_page_runs_a_job_with_its_default_analyses_in_chromium_with_live_progress_and_feedback() {
    // Arrange
    let root = workspace_root();
    let script = root.join("tests/browser/page.test.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(PathBuf::from(&chromium).exists(), "{chromium} is missing: install Debian's `chromium` package (scripts/test does)");

    let env = TestEnv::new().await;
    let mut api = env.api_settings();
    api.api.event_poll_ms = 100;
    let app = TestApp::spawn(&env, api).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    // The checkboxes the page must show: the catalogue's public analyses it offers up front.
    // The job runs with their default ticks; model-backed ones run on the default pack.
    let offered: Vec<_> = CATALOGUE.iter().filter(|s| s.visibility == Visibility::Public && matches!(s.offer, Offer::Ticked | Offer::Unticked)).collect();
    let ticked: Vec<&str> = offered.iter().filter(|s| s.offer == Offer::Ticked).map(|s| s.name.as_str()).collect();
    let expected = serde_json::to_string(&offered).expect("serialises");
    let clip_dir = tempfile::tempdir().expect("tempdir");
    let clip = clip_dir.path().join("pasta.mp4");
    std::fs::write(&clip, tokio::task::spawn_blocking(spoken_clip).await.expect("clip")).expect("clip written");
    let artifacts = root.join("target/browser-artifacts");
    for shot in ["page-1280x800.png", "page-390x844.png"] {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }

    // Act
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(root.join("tests/browser"))
        .env("REELQ_BASE_URL", app.url(""))
        .env("REELQ_API_KEY", &app.key)
        .env("REELQ_CLIP", &clip)
        .env("REELQ_OFFERED", &expected)
        .env("REELQ_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(420), run).await.expect("the browser run finishes").expect("node runs");

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    for shot in ["page-1280x800.png", "page-390x844.png"] {
        let bytes = std::fs::read(artifacts.join(shot)).expect("screenshot written");
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{shot} is a real screenshot");
    }
    // The full job, and a second one followed by polling while the event stream was blocked.
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs WHERE status = 'succeeded'").await, 2);
    let mut first: Vec<String> =
        sqlx::query_scalar("SELECT analyses FROM jobs ORDER BY created_at LIMIT 1").fetch_one(&env.pool).await.expect("the first job");
    first.sort();
    let mut defaults: Vec<String> = ticked.iter().map(|a| (*a).to_owned()).collect();
    defaults.sort();
    assert_eq!(first, defaults, "the first job ran exactly the page's default analyses");
    if ticked.contains(&"hashtags") {
        let tags: Vec<String> = sqlx::query_scalar("SELECT unnest(hashtags) FROM feedback").fetch_all(&env.pool).await.expect("feedback");
        assert_eq!(tags.len(), 3, "two ticked suggestions and one tag of the creator's own: {tags:?}");
        assert!(tags.contains(&"#myowntag".to_owned()), "{tags:?}");
    }

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
