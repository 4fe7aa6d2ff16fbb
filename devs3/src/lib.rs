//! A small S3-compatible server over a local folder (s3s with its file-system backend), with
//! signature checking. reelq's tests start it in-process; `reelq-dev-s3` runs it for local
//! development where MinIO is not available. Like S3 and MinIO, it verifies a PUT's
//! `x-amz-checksum-*` header against the body and keeps nothing when they differ.

mod checked;

use std::net::SocketAddr;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// A running server. Dropping it, or calling [`DevS3::stop`], stops it and cuts every open
/// connection, as a crashed storage service would.
pub struct DevS3 {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DevS3 {
    /// Serves `root` on `listener` with one access key pair.
    pub fn start(listener: std::net::TcpListener, root: PathBuf, access_key: &str, secret_key: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&root)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = TcpListener::from_std(listener)?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("cannot serve folder: {e:?}"))?;
        let mut builder = S3ServiceBuilder::new(checked::CheckedFs::new(fs));
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();
        let (tx, mut rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                        conns.spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            conns.abort_all();
        });
        Ok(Self { addr, stop: Some(tx), task: Some(task) })
    }

    /// Binds `127.0.0.1:0` and serves `root`.
    pub fn start_local(root: PathBuf, access_key: &str, secret_key: &str) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Self::start(listener, root, access_key, secret_key)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(mut self) {
        self.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for DevS3 {
    fn drop(&mut self) {
        self.shutdown();
    }
}
