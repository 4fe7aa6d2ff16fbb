//! Upload hardening: slow and stalled bodies are cut off with 408 and leave nothing stored, a
//! tenant's concurrent uploads are capped, presigned PUTs are bound to their declared size (and
//! SHA-256, which storage verifies), and pending uploads expire with their bytes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use reelq_tests::{TestApp, TestEnv, count, sample_clip};

/// What a raw-socket upload saw.
struct SlowUpload {
    /// When the request line and headers had been written.
    started: Instant,
    /// When the last body byte before the answer was written.
    last_write: Instant,
    /// When the first byte of the answer arrived.
    answered: Instant,
    /// The whole answer, up to the server closing the connection.
    response: String,
    /// Whether the server closed the connection after answering.
    closed: bool,
}

impl SlowUpload {
    fn status(&self) -> u16 {
        self.response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    fn body(&self) -> Value {
        let body = self.response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
}

/// POSTs a video over a raw socket, declaring `declared` bytes but sending `first` at once and
/// then one byte of `rest` per `interval`, until the server answers.
async fn slow_upload(addr: SocketAddr, key: &str, declared: usize, first: Vec<u8>, rest: Vec<u8>, interval: Duration) -> SlowUpload {
    slow_post(addr, key, "/v1/videos", "video/mp4", declared, first, rest, interval).await
}

/// [`slow_upload`] to any path with any content type.
#[allow(clippy::too_many_arguments)]
async fn slow_post(
    addr: SocketAddr,
    key: &str,
    path: &str,
    content_type: &str,
    declared: usize,
    first: Vec<u8>,
    rest: Vec<u8>,
    interval: Duration,
) -> SlowUpload {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.expect("headers written");
    let started = Instant::now();
    write.write_all(&first).await.expect("first bytes written");
    let last_write = Arc::new(Mutex::new(Instant::now()));
    let stamp = last_write.clone();
    // Aborted with this future too, so that a client the test drops closes its connection.
    let writer = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        for b in rest {
            tokio::time::sleep(interval).await;
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            *stamp.lock().expect("lock") = Instant::now();
        }
        // Keep the socket open, silent, until the test ends it.
        tokio::time::sleep(Duration::from_secs(600)).await;
    }));
    let mut first_byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(120), read.read(&mut first_byte)).await.expect("answered within 120 s").expect("read");
    let answered = Instant::now();
    assert_eq!(n, 1, "the server closed the connection without an answer");
    let last_write = *last_write.lock().expect("lock");
    let mut rest = Vec::new();
    let closed = matches!(tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut rest)).await, Ok(Ok(_)));
    drop(writer);
    let mut bytes = first_byte.to_vec();
    bytes.extend(rest);
    SlowUpload { started, last_write, answered, response: String::from_utf8_lossy(&bytes).into_owned(), closed }
}

/// Starts `n` slow uploads of the clip: each sends the first `sent` bytes at once, then the
/// next `trickled` bytes one per `interval`.
fn slow_clients(app: &TestApp, n: usize, sent: usize, trickled: usize, interval: Duration) -> Vec<tokio::task::JoinHandle<SlowUpload>> {
    let clip = sample_clip();
    (0..n)
        .map(|_| {
            let (addr, key, clip) = (app.addr, app.key.clone(), clip.clone());
            tokio::spawn(async move { slow_upload(addr, &key, clip.len(), clip[..sent].to_vec(), clip[sent..sent + trickled].to_vec(), interval).await })
        })
        .collect()
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
fn metric(text: &str, sample: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// Bytes under the S3 root that belong to uploads: objects under `uploads/` and the parts of
/// multipart uploads (s3s-fs keeps them as `.upload_id-…` files; its small bookkeeping files
/// hold no upload data and are left out).
fn upload_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = p.display().to_string();
            if p.is_dir() {
                walk(&p, out);
            } else if name.contains("/uploads/") || name.contains(".upload_id-") {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_uploads_are_cut_off_after_the_idle_timeout_and_leave_nothing() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.api.upload_idle_timeout_secs = 2;
    settings.api.upload_body_timeout_secs = 60;
    settings.api.max_concurrent_uploads = 20;
    // Small parts, so that the large stalled upload below has a multipart upload under way.
    settings.storage.part_size_bytes = 5 * 1024 * 1024;
    let idle = Duration::from_secs(settings.api.upload_idle_timeout_secs);
    let app = TestApp::spawn(&env, settings).await;
    let clip = sample_clip();

    // Ten clients each send the start of a clip, then one byte every 3 s: slower than the
    // idle timeout allows. An eleventh sends 6 MiB (one stored part) and then goes silent.
    let mut clients = slow_clients(&app, 10, 100, 10, Duration::from_secs(3));
    let mut big = clip.clone();
    big.resize(6 * 1024 * 1024, 0);
    let (addr, key) = (app.addr, app.key.clone());
    let stalled = tokio::spawn(async move { slow_upload(addr, &key, 8 * 1024 * 1024, big, Vec::new(), Duration::from_secs(1)).await });
    clients.push(stalled);
    // Multipart bodies too: a job submission whose `file` field stops halfway, and a
    // multipart upload whose form stops before its file field begins.
    for (path, stop_at) in [("/v1/jobs", 300), ("/v1/videos", 20)] {
        let boundary = "reelq-test-boundary";
        let mut form = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"analyses\"\r\n\r\nprobe\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
        )
        .into_bytes();
        form.extend_from_slice(&clip);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let (addr, key) = (app.addr, app.key.clone());
        let ct = format!("multipart/form-data; boundary={boundary}");
        clients.push(tokio::spawn(async move {
            slow_post(addr, &key, path, &ct, form.len(), form[..stop_at].to_vec(), Vec::new(), Duration::from_secs(1)).await
        }));
    }

    for c in clients {
        let up = c.await.expect("client ran");
        let silent = up.answered - up.last_write;
        assert_eq!(up.status(), 408, "{}", up.response);
        assert_eq!(up.body()["code"], "upload_timeout", "{}", up.response);
        assert!(up.response.to_ascii_lowercase().contains("content-type: application/problem+json"), "{}", up.response);
        assert!(silent >= idle, "answered {silent:?} after the last byte: before the {idle:?} idle timeout");
        assert!(silent < idle + Duration::from_secs(3), "answered {silent:?} after the last byte: long after the {idle:?} idle timeout");
        assert!(up.closed, "the connection is closed after the 408");
        eprintln!("cut off {:.2} s after its last byte ({:.2} s after it began)", silent.as_secs_f64(), (up.answered - up.started).as_secs_f64());
    }

    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 0);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 0);
    let left = upload_files(env.s3_root.path());
    assert!(left.is_empty(), "stalled uploads left files in storage (the multipart upload was not aborted?): {left:?}");
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    let cut: f64 = metric(&metrics, "reelq_upload_refusals_total{reason=\"idle_timeout\"}");
    assert!(cut >= 13.0, "cut-off uploads are counted: {cut}");
    // The api still takes uploads.
    app.upload_clip(sample_clip()).await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickling_uploads_are_cut_off_at_the_body_deadline() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.api.upload_idle_timeout_secs = 2;
    settings.api.upload_body_timeout_secs = 4;
    settings.api.max_concurrent_uploads = 30;
    let deadline = Duration::from_secs(settings.api.upload_body_timeout_secs);
    let app = TestApp::spawn(&env, settings).await;

    // Twenty clients each send one byte every 0.5 s: never idle, but never done either.
    for c in slow_clients(&app, 20, 1, 199, Duration::from_millis(500)) {
        let up = c.await.expect("client ran");
        let took = up.answered - up.started;
        assert_eq!(up.status(), 408, "{}", up.response);
        assert_eq!(up.body()["code"], "upload_timeout");
        assert!(up.body()["detail"].as_str().is_some_and(|d| d.contains("longer than 4 s")), "{}", up.response);
        eprintln!("cut off {:.2} s after it began", took.as_secs_f64());
        assert!(took >= deadline, "answered after {took:?}: before the {deadline:?} deadline");
        assert!(took < deadline + Duration::from_secs(3), "answered after {took:?}: long after the {deadline:?} deadline");
        assert!(up.closed);
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 0);
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_may_stream_only_so_many_uploads_at_once() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.api.max_concurrent_uploads = 2;
    settings.api.upload_idle_timeout_secs = 30;
    let app = TestApp::spawn(&env, settings).await;
    let clip = sample_clip();

    // Two uploads of this tenant hold their slots, sending a byte a second.
    let holders = slow_clients(&app, 2, 100, 100, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(700)).await;

    let third = app.upload_raw(clip.clone(), "video/mp4").await;
    assert_eq!(third.status(), 429);
    let retry_after: u64 = third.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(third.headers()["content-type"], "application/problem+json");
    let problem: Value = third.json().await.expect("json");
    assert_eq!(problem["code"], "too_many_uploads");
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(metric(&metrics, "reelq_upload_refusals_total{reason=\"busy\"}") >= 1.0, "turned-away uploads are counted");
    // Multipart job submissions stream a file too, and share the cap.
    let form = reqwest::multipart::Form::new()
        .text("analyses", "probe")
        .part("file", reqwest::multipart::Part::bytes(clip.clone()).file_name("a.mp4").mime_str("video/mp4").expect("mime"));
    let job = app.http.post(app.url("/v1/jobs")).bearer_auth(&app.key).multipart(form).send().await.expect("sent");
    assert_eq!(job.status(), 429);
    // Another tenant is not held up by this one's uploads.
    let other = app
        .http
        .post(app.url("/v1/videos"))
        .bearer_auth(&app.other_key)
        .header("content-type", "video/mp4")
        .body(clip.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(other.status(), 201);

    // Once the holders go away their slots are free again.
    for h in holders {
        h.abort();
    }
    let started = Instant::now();
    loop {
        let resp = app.upload_raw(clip.clone(), "video/mp4").await;
        if resp.status() == 201 {
            break;
        }
        assert_eq!(resp.status(), 429);
        assert!(started.elapsed() < Duration::from_secs(10), "slots were not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presigned_uploads_need_a_size_and_are_bound_to_it() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let clip = sample_clip();
    let presign = |body: Option<Value>| {
        let req = app.http.post(app.url("/v1/uploads")).bearer_auth(&app.key);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        req.send()
    };

    // No body, no size, or size 0: refused, and no pending video is created.
    for body in [None, Some(json!({})), Some(json!({ "size_bytes": 0 })), Some(json!({ "content_type": "video/mp4" }))] {
        let resp = presign(body.clone()).await.expect("sent");
        assert_eq!(resp.status(), 422, "{body:?}");
        let problem: Value = resp.json().await.expect("json");
        assert!(problem["code"] == "size_required" || problem["code"] == "invalid_json", "{body:?}: {problem}");
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 0);

    // A PUT of the declared size works.
    let slot: Value = presign(Some(json!({ "size_bytes": clip.len(), "content_type": "video/mp4" }))).await.expect("sent").json().await.expect("json");
    assert_eq!(slot["headers"]["content-length"], clip.len().to_string());
    let put = reqwest::Client::new()
        .put(slot["upload_url"].as_str().expect("url"))
        .header("content-type", "video/mp4")
        .body(clip.clone())
        .send()
        .await
        .expect("sent");
    assert!(put.status().is_success(), "PUT of the declared size: {}", put.text().await.unwrap_or_default());
    let done = app.http.post(app.url(slot["complete_url"].as_str().expect("url"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(done.status(), 200);

    // Storage itself refuses a PUT longer or shorter than declared: the length is signed.
    let slot: Value = presign(Some(json!({ "size_bytes": 1000, "content_type": "video/mp4" }))).await.expect("sent").json().await.expect("json");
    let url = slot["upload_url"].as_str().expect("url");
    for size in [clip.len(), 999] {
        let put = reqwest::Client::new().put(url).header("content-type", "video/mp4").body(clip[..size].to_vec()).send().await.expect("sent");
        assert!(put.status().is_client_error(), "a PUT of {size} bytes on a 1000-byte slot was {}", put.status());
    }
    let object = slot["upload_url"].as_str().and_then(|u| u.split('?').next()).expect("url").to_owned();
    let key = object.split("/reelq-test/").nth(1).expect("key").to_owned();
    let store = reelq_shared::storage::Store::new(&env.storage);
    assert_eq!(store.size(&key).await.expect("head"), None, "nothing was stored by the refused PUTs");

    // Completion checks the declared size too, for storage that does not check signatures.
    store.put_bytes(&key, clip[..1200].to_vec(), "video/mp4").await.expect("stored behind the api's back");
    let done = app.http.post(app.url(slot["complete_url"].as_str().expect("url"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(done.status(), 422);
    let problem: Value = done.json().await.expect("json");
    assert_eq!(problem["code"], "size_mismatch");
    assert_eq!(store.size(&key).await.expect("head"), None, "the wrong-sized object was removed");
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamed_upload_of_many_parts_is_stored_whole_with_the_sha256_of_its_bytes() {
    use sha2::{Digest as _, Sha256};

    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    // Small parts and two in flight, so part buffers are sent, given back and filled again.
    settings.storage.part_size_bytes = 5 * 1024 * 1024;
    settings.storage.upload_concurrency = 2;
    let app = TestApp::spawn(&env, settings).await;
    // A clip's header, then words that each hold their own position: a part sent twice, out
    // of order or overwritten while in flight changes the bytes stored.
    let mut body = sample_clip();
    body.extend((0u32..6 * 1024 * 1024).flat_map(u32::to_le_bytes));
    body.truncate(23 * 1024 * 1024 + 12_345);
    let sha256 = hex::encode(Sha256::digest(&body));

    let resp =
        app.http.post(app.url("/v1/videos")).bearer_auth(&app.key).header("content-type", "video/mp4").body(body.clone()).send().await.expect("sent");

    assert_eq!(resp.status(), 201);
    let video: Value = resp.json().await.expect("json");
    assert_eq!(video["sha256"], sha256);
    assert_eq!(video["size_bytes"], body.len());
    let store = reelq_shared::storage::Store::new(&env.storage);
    let stored = store.inspect(&format!("uploads/{}/{}", app.tenant_id, video["id"].as_str().expect("id"))).await.expect("stored");
    assert_eq!(stored.sha256, sha256, "the stored bytes are the bytes sent");
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presigned_uploads_with_a_declared_sha256_are_checked_by_storage_not_read_again() {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};

    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let store = reelq_shared::storage::Store::new(&env.storage);
    let clip = sample_clip();
    let digest = Sha256::digest(&clip);
    let declared = hex::encode(digest);
    // Same length and container, one byte different near the end.
    let mut tampered = clip.clone();
    let last = tampered.len() - 10;
    tampered[last] ^= 0xFF;
    let slot = |sha256: Value| {
        let body = json!({ "size_bytes": clip.len(), "content_type": "video/mp4", "sha256": sha256 });
        let req = app.http.post(app.url("/v1/uploads")).bearer_auth(&app.key).json(&body);
        async move { req.send().await.expect("sent") }
    };
    let put = |slot: &Value, body: Vec<u8>, with_headers: bool| {
        let mut req = reqwest::Client::new().put(slot["upload_url"].as_str().expect("url")).body(body);
        for (k, v) in slot["headers"].as_object().expect("headers") {
            if with_headers || k != "x-amz-checksum-sha256" {
                req = req.header(k.as_str(), v.as_str().expect("string"));
            }
        }
        async move { req.send().await.expect("sent") }
    };
    let complete = |slot: &Value| app.http.post(app.url(slot["complete_url"].as_str().expect("url"))).bearer_auth(&app.key).send();
    let key_of = |slot: &Value| format!("uploads/{}/{}", app.tenant_id, slot["video_id"].as_str().expect("id"));
    let s3_calls = || async {
        let text = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
        let calls = |op: &str| metric(&text, &format!("reelq_s3_call_duration_seconds_count{{op=\"{op}\",outcome=\"ok\"}}"));
        (calls("inspect"), calls("sniff"))
    };

    // A declared sha256 must be 64 hex digits; nothing is created otherwise.
    for bad in [json!("abc"), json!(format!("{declared}00")), json!(format!("g{}", &declared[1..])), json!(12)] {
        let resp = slot(bad.clone()).await;
        assert_eq!(resp.status(), 422, "{bad}");
        let problem: Value = resp.json().await.expect("json");
        assert!(problem["code"] == "invalid_sha256" || problem["code"] == "invalid_json", "{bad}: {problem}");
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 0);

    // The slot names the checksum header to send, and the URL is signed for it.
    let good: Value = slot(json!(declared.to_uppercase())).await.json().await.expect("json");
    assert_eq!(good["headers"]["x-amz-checksum-sha256"], base64::engine::general_purpose::STANDARD.encode(digest));
    assert_eq!(good["headers"]["content-length"], clip.len().to_string());
    let resp = put(&good, clip.clone(), false).await;
    assert!(resp.status().is_client_error(), "a PUT without the declared checksum header was {}", resp.status());
    assert_eq!(store.size(&key_of(&good)).await.expect("head"), None);

    // Bytes that match: completion asks storage for the checksum it kept and reads only the
    // first bytes, and records the declared sha256.
    let resp = put(&good, clip.clone(), true).await;
    assert!(resp.status().is_success(), "matching PUT: {}", resp.text().await.unwrap_or_default());
    let (inspected, sniffed) = s3_calls().await;
    let done = complete(&good).await.expect("sent");
    assert_eq!(done.status(), 200);
    let video: Value = done.json().await.expect("json");
    assert_eq!(video["status"], "stored");
    assert_eq!(video["sha256"], declared);
    assert_eq!(video["size_bytes"], clip.len());
    assert_eq!(video["container"], "mp4");
    assert_eq!(s3_calls().await, (inspected, sniffed + 1.0), "completion read the object only for its container");

    // Bytes that do not match the declared sha256: storage refuses them and keeps nothing, and
    // the video cannot be completed.
    let bad: Value = slot(json!(declared)).await.json().await.expect("json");
    let resp = put(&bad, tampered.clone(), true).await;
    assert!(resp.status().is_client_error(), "a PUT of other bytes was {}", resp.status());
    assert_eq!(store.size(&key_of(&bad)).await.expect("head"), None, "the refused bytes were not kept");
    let done = complete(&bad).await.expect("sent");
    assert_eq!(done.status(), 422);
    let problem: Value = done.json().await.expect("json");
    assert_eq!(problem["code"], "upload_missing");
    let row: Value = app
        .http
        .get(app.url(&format!("/v1/videos/{}", bad["video_id"].as_str().expect("id"))))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(row["status"], "pending");
    let job = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.key)
        .json(&json!({ "video_id": bad["video_id"], "analyses": ["probe"] }))
        .send()
        .await
        .expect("sent");
    assert!(job.status().is_client_error(), "a job on the refused upload was {}", job.status());

    // Other bytes PUT after the right ones on the same URL: whatever storage keeps, the
    // recorded sha256 is that of the bytes stored.
    let twice: Value = slot(json!(declared)).await.json().await.expect("json");
    assert!(put(&twice, clip.clone(), true).await.status().is_success());
    assert!(put(&twice, tampered.clone(), true).await.status().is_client_error());
    let done = complete(&twice).await.expect("sent");
    if done.status() == 200 {
        let video: Value = done.json().await.expect("json");
        let stored = store.inspect(&key_of(&twice)).await.expect("stored");
        assert_eq!(video["sha256"], json!(stored.sha256));
    } else {
        assert_eq!(done.status(), 422);
        assert_eq!(store.size(&key_of(&twice)).await.expect("head"), None);
    }

    // Storage that keeps no checksum (the object arrives behind the signature's back):
    // completion hashes the bytes itself and holds them to the declaration.
    let unchecked: Value = slot(json!(declared)).await.json().await.expect("json");
    store.put_bytes(&key_of(&unchecked), tampered.clone(), "video/mp4").await.expect("stored");
    let done = complete(&unchecked).await.expect("sent");
    assert_eq!(done.status(), 422);
    let problem: Value = done.json().await.expect("json");
    assert_eq!(problem["code"], "checksum_mismatch");
    assert_eq!(store.size(&key_of(&unchecked)).await.expect("head"), None, "the mismatching object was removed");
    let unchecked: Value = slot(json!(declared)).await.json().await.expect("json");
    store.put_bytes(&key_of(&unchecked), clip.clone(), "video/mp4").await.expect("stored");
    let done = complete(&unchecked).await.expect("sent");
    assert_eq!(done.status(), 200);
    let video: Value = done.json().await.expect("json");
    assert_eq!(video["sha256"], declared);

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_uploads_expire_with_their_bytes() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    // A presigned URL's date has whole seconds, so a 1 s lifetime can end a moment after
    // signing: 2 s leaves the PUTs below time to arrive.
    settings.storage.presign_ttl_secs = 2;
    settings.api.pending_upload_ttl_secs = 3;
    settings.api.upload_sweep_interval_secs = 1;
    let ttl = Duration::from_secs(settings.api.pending_upload_ttl_secs);
    let app = TestApp::spawn(&env, settings).await;
    let clip = sample_clip();
    let store = reelq_shared::storage::Store::new(&env.storage);
    let presign = || async {
        let v: Value = app
            .http
            .post(app.url("/v1/uploads"))
            .bearer_auth(&app.key)
            .json(&json!({ "size_bytes": clip.len(), "content_type": "video/mp4" }))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        v
    };
    let put = |slot: Value| {
        let clip = clip.clone();
        async move {
            let resp = reqwest::Client::new()
                .put(slot["upload_url"].as_str().expect("url"))
                .header("content-type", "video/mp4")
                .body(clip)
                .send()
                .await
                .expect("sent");
            assert!(resp.status().is_success());
        }
    };
    let created = Instant::now();
    // Abandoned after the PUT, abandoned before it, and completed.
    let with_bytes = presign().await;
    put(with_bytes.clone()).await;
    let empty = presign().await;
    let completed = presign().await;
    put(completed.clone()).await;
    let done = app.http.post(app.url(completed["complete_url"].as_str().expect("url"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(done.status(), 200);
    let streamed = app.upload_clip(clip.clone()).await;
    let key_of = |id: &Value| format!("uploads/{}/{}", app.tenant_id, id.as_str().expect("id"));
    let rows_of = |id: Value| {
        let pool = env.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM videos WHERE id = $1")
                .bind(id.as_str().and_then(|s| s.parse::<uuid::Uuid>().ok()).expect("uuid"))
                .fetch_one(&pool)
                .await
                .expect("query")
        }
    };

    // Nothing goes before the TTL.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(created.elapsed() < ttl);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 4, "swept before the TTL");
    assert!(store.size(&key_of(&with_bytes["video_id"])).await.expect("head").is_some());

    // Soon after it, the abandoned slots are gone, rows and bytes.
    loop {
        if count(&env.pool, "SELECT count(*) FROM videos WHERE status = 'pending'").await == 0 {
            break;
        }
        assert!(created.elapsed() < ttl + Duration::from_secs(6), "pending uploads still there {:?} after they were made", created.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created.elapsed() >= ttl);
    assert_eq!(rows_of(with_bytes["video_id"].clone()).await, 0);
    assert_eq!(rows_of(empty["video_id"].clone()).await, 0);
    assert_eq!(store.size(&key_of(&with_bytes["video_id"])).await.expect("head"), None, "the abandoned PUT's bytes are gone");
    // Completed and streamed uploads stay.
    assert_eq!(rows_of(completed["video_id"].clone()).await, 1);
    assert!(store.size(&key_of(&completed["video_id"])).await.expect("head").is_some());
    assert!(store.size(&format!("uploads/{}/{streamed}", app.tenant_id)).await.expect("head").is_some());
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(metric(&metrics, "reelq_pending_uploads_expired_total") >= 2.0, "swept uploads are counted");
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sweeps_split_the_expired_uploads_between_them() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    // The app's own sweeper stays out of the way; this test runs sweeps by hand.
    settings.api.upload_sweep_interval_secs = 3_600;
    let app = TestApp::spawn(&env, settings.clone()).await;
    sqlx::query(
        "INSERT INTO videos (id, tenant_id, object_key, status, declared_size, created_at)
         SELECT gen_random_uuid(), $1, 'uploads/none/' || g, 'pending', 10, now() - interval '2 days' FROM generate_series(1, 150) g",
    )
    .bind(app.tenant_id)
    .execute(&env.pool)
    .await
    .expect("expired rows");
    let api = reelq_api::Application::build(settings).await.expect("builds");
    let state = api.state().clone();

    let (a, b) = tokio::join!(reelq_api::ingest::sweep_expired_uploads(&state), reelq_api::ingest::sweep_expired_uploads(&state));
    let (a, b) = (a.expect("sweep a"), b.expect("sweep b"));
    let rest = reelq_api::ingest::sweep_expired_uploads(&state).await.expect("sweep c");

    assert_eq!(a + b + rest, 150, "each expired upload is swept exactly once ({a} + {b} + {rest})");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 0);
    app.stop().await;
    env.cleanup().await;
}
