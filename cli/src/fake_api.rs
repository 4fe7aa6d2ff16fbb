//! A stand-in for the reelq API in unit tests: a local HTTP server answering each request with
//! the next canned response, so that client behaviour (retries, paging, errors) is tested
//! against real HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP server answering the n-th request with the n-th canned response (the last one
/// once they run out); returns its URL and a count of requests served.
pub async fn fake_api(responses: Vec<(u16, String)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let hits = Arc::new(AtomicUsize::new(0));
    let served = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = served.fetch_add(1, Ordering::SeqCst);
            let (status, body) = responses.get(n).or(responses.last()).cloned().expect("a response");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = sock.read(&mut buf).await.expect("read");
                if read == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..read]);
            }
            let ct = if status >= 400 { "application/problem+json" } else { "application/json" };
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            sock.write_all(reply.as_bytes()).await.expect("write");
        }
    });
    (format!("http://{addr}"), hits)
}

/// A canned problem+json refusal.
pub fn problem(status: u16, title: &str, code: &str, detail: &str) -> (u16, String) {
    let body = serde_json::json!({"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code});
    (status, body.to_string())
}
