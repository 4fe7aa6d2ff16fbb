//! S3-compatible object storage (MinIO, or any S3), path-style. Uploads stream in fixed-size
//! multipart parts with the SHA-256 computed on the way, so memory does not grow with file size.
//!
//! That SHA-256 is the only pass over the bytes: upload bodies are sent with an unsigned
//! payload (the request itself is still signed) and without the SDK's default CRC32 request
//! checksum, which would each read every byte again. Responses are not checksummed either: the
//! recorded SHA-256 is the video's integrity record.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt as _};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::config::StorageSettings;
use crate::db::videos::StoredObject;
use crate::domain::{SNIFF_LEN, sniff_container};
use crate::metrics;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The stream was longer than allowed. Nothing was kept.
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The bytes are not a container reelq accepts. Nothing was kept.
    #[error("the file is not an MP4, MOV, WebM or Matroska video, nor an MP3, WAV, M4A, AAC, FLAC or Ogg audio file")]
    NotAVideo,
    /// The upload body was empty.
    #[error("the upload is empty")]
    Empty,
    /// Reading the incoming body failed (the client went away).
    #[error("reading the upload failed: {0}")]
    Body(#[source] std::io::Error),
    /// The object does not exist.
    #[error("object `{0}` not found")]
    NotFound(String),
    /// The storage service failed or could not be reached.
    #[error("storage call `{op}` failed: {message}")]
    Service {
        /// Operation name.
        op: &'static str,
        /// Error text, including the service's code where there is one.
        message: String,
    },
    /// A local file could not be written.
    #[error("local file error: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Whether the client, not the system, is at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::NotAVideo | Self::Empty | Self::Body(_))
    }

    fn service<E: std::error::Error + 'static>(op: &'static str, err: aws_sdk_s3::error::SdkError<E>) -> Self {
        use std::error::Error as _;
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self::Service { op, message }
    }
}

/// A handle on the bucket.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    bucket: String,
    part_size: usize,
    concurrency: usize,
    presign_ttl: Duration,
}

impl Store {
    /// Builds a client; no call is made until first use.
    pub fn new(settings: &StorageSettings) -> Self {
        let creds = Credentials::new(settings.access_key.clone(), settings.secret_key.expose_secret().to_owned(), None, None, "reelq-config");
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_millis(settings.operation_timeout_ms))
            .build();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .endpoint_url(settings.endpoint.clone())
            .credentials_provider(creds)
            .force_path_style(true)
            .timeout_config(timeouts)
            // Only operations that S3 insists on (DeleteObjects) get a request checksum; the
            // SDK's default adds a CRC32 of every upload body.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Self {
            client: Client::from_conf(config),
            bucket: settings.bucket.clone(),
            part_size: settings.part_size_bytes,
            concurrency: settings.upload_concurrency,
            presign_ttl: Duration::from_secs(settings.presign_ttl_secs),
        }
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket if it does not exist.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let already = e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists());
                if already { Ok(()) } else { Err(StorageError::service("create_bucket", e)) }
            }
        }
    }

    /// Checks that the bucket answers, for readiness.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| StorageError::service("head_bucket", e))?;
        Ok(())
    }

    /// Streams `body` to `key`, checking the container's magic bytes before anything is stored
    /// and enforcing `limit`. Small bodies go up in one PUT, larger ones as multipart with
    /// `upload_concurrency` parts in flight. On any error nothing is left behind.
    pub async fn save_video_stream<S>(&self, key: &str, content_type: Option<&str>, body: S, limit: u64) -> Result<StoredObject, StorageError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
    {
        observe("upload", self.save_video_stream_inner(key, content_type, body, limit)).await
    }

    async fn save_video_stream_inner<S>(&self, key: &str, content_type: Option<&str>, body: S, limit: u64) -> Result<StoredObject, StorageError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
    {
        let mut body = std::pin::pin!(body);
        let mut hasher = Sha256::new();
        // Part buffers are allocated at exactly the part size and never grow: a growing buffer
        // doubles its capacity and copies, which would multiply memory per upload.
        let mut buf = BytesMut::with_capacity(self.part_size);
        let mut leftover: Option<Bytes> = None;
        let mut total: u64 = 0;
        let mut container: Option<&'static str> = None;

        // Fill the first part (or the whole body if it is smaller).
        let mut ended = false;
        while buf.len() < self.part_size {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(StorageError::Body)?;
                    total += chunk.len() as u64;
                    if total > limit {
                        return Err(StorageError::TooLarge { limit });
                    }
                    let take = (self.part_size - buf.len()).min(chunk.len());
                    buf.extend_from_slice(&chunk[..take]);
                    if take < chunk.len() {
                        leftover = Some(chunk.slice(take..));
                    }
                    if container.is_none() && buf.len() >= SNIFF_LEN {
                        match sniff_container(&buf) {
                            Some(c) => container = Some(c),
                            None => {
                                drain(body.as_mut(), REFUSAL_DRAIN_BYTES).await;
                                return Err(StorageError::NotAVideo);
                            }
                        }
                    }
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if buf.is_empty() {
            return Err(StorageError::Empty);
        }
        let container = match container {
            Some(c) => c,
            None => sniff_container(&buf).ok_or(StorageError::NotAVideo)?,
        };

        if ended {
            let bytes = buf.freeze();
            hasher.update(&bytes);
            let size = bytes.len() as i64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .set_content_type(content_type.map(str::to_owned))
                .body(ByteStream::from(bytes))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| StorageError::service("put_object", e))?;
            return Ok(StoredObject { size_bytes: size, sha256: hex::encode(hasher.finalize()), container: container.to_owned() });
        }

        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .send()
            .await
            .map_err(|e| StorageError::service("create_multipart_upload", e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(key, &upload_id, buf.freeze(), leftover, body, &mut hasher, &mut total, limit).await;
        match result {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(|e| StorageError::service("complete_multipart_upload", e))?;
                Ok(StoredObject { size_bytes: total as i64, sha256: hex::encode(hasher.finalize()), container: container.to_owned() })
            }
            Err(e) => {
                let abort = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await;
                if let Err(abort) = abort {
                    tracing::warn!(key, error = %abort, "aborting a failed multipart upload failed");
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_parts<S>(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        mut leftover: Option<Bytes>,
        mut body: std::pin::Pin<&mut S>,
        hasher: &mut Sha256,
        total: &mut u64,
        limit: u64,
    ) -> Result<Vec<CompletedPart>, StorageError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
    {
        let mut in_flight = FuturesOrdered::new();
        let mut done = Vec::new();
        // Buffers of parts already sent, filled again rather than freed: allocating a fresh
        // part for every few megabytes left the allocator holding several times the parts in
        // flight (8 MiB parts, one in flight: 71 MiB resident instead of about 40).
        let mut spare: Vec<BytesMut> = Vec::with_capacity(self.concurrency + 1);
        let mut part_number = 0i32;
        let mut next_part = Some(first);
        let mut buf = BytesMut::with_capacity(self.part_size);
        let mut ended = false;
        loop {
            if let Some(part) = next_part.take() {
                hasher.update(&part);
                part_number += 1;
                in_flight.push_back(self.upload_part(key, upload_id, part_number, part));
                while in_flight.len() >= self.concurrency {
                    if let Some(p) = in_flight.next().await {
                        let (completed, sent) = p?;
                        done.push(completed);
                        self.recycle(&mut spare, sent);
                    }
                }
            }
            if ended {
                break;
            }
            let chunk = match leftover.take() {
                Some(c) => Some(c),
                None => match body.next().await {
                    Some(c) => {
                        let c = c.map_err(StorageError::Body)?;
                        *total += c.len() as u64;
                        if *total > limit {
                            return Err(StorageError::TooLarge { limit });
                        }
                        Some(c)
                    }
                    None => None,
                },
            };
            match chunk {
                Some(c) => {
                    let take = (self.part_size - buf.len()).min(c.len());
                    buf.extend_from_slice(&c[..take]);
                    if take < c.len() {
                        leftover = Some(c.slice(take..));
                    }
                    if buf.len() == self.part_size {
                        let empty = spare.pop().unwrap_or_else(|| BytesMut::with_capacity(self.part_size));
                        next_part = Some(std::mem::replace(&mut buf, empty).freeze());
                    }
                }
                None => {
                    ended = true;
                    if !buf.is_empty() {
                        next_part = Some(std::mem::take(&mut buf).freeze());
                    }
                }
            }
        }
        while let Some(p) = in_flight.next().await {
            done.push(p?.0);
        }
        Ok(done)
    }

    /// Keeps a sent part's buffer for the next part, when nothing else holds it any more.
    fn recycle(&self, spare: &mut Vec<BytesMut>, sent: Bytes) {
        if let Ok(mut buf) = sent.try_into_mut()
            && buf.capacity() >= self.part_size
        {
            buf.clear();
            spare.push(buf);
        }
    }

    /// Uploads one part; gives its bytes back with it, for [`Store::recycle`].
    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, data: Bytes) -> Result<(CompletedPart, Bytes), StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(data.clone()))
            // The bytes were hashed once on the way in; signing them would hash them again.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| StorageError::service("upload_part", e))?;
        Ok((CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_owned)).build(), data))
    }

    /// Starts reading an object; a missing key is [`StorageError::NotFound`].
    async fn get_object(&self, key: &str) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
        self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                StorageError::NotFound(key.to_owned())
            } else {
                StorageError::service("get_object", e)
            }
        })
    }

    /// Streams an object to a local file; returns its size.
    pub async fn download_to_file(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        observe("download", self.download_to_file_inner(key, path)).await
    }

    async fn download_to_file_inner(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        let out = self.get_object(key).await?;
        let mut file = tokio::fs::File::create(path).await?;
        let mut body = out.body;
        let mut size = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| StorageError::Service { op: "get_object.body", message: e.to_string() })? {
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(size)
    }

    /// Uploads a local file (a job's output) to `key` as one streamed PUT, so memory does not
    /// grow with its size; returns the size.
    pub async fn upload_file(&self, key: &str, path: &Path, content_type: &str) -> Result<u64, StorageError> {
        observe("upload_file", async {
            let size = tokio::fs::metadata(path).await?.len();
            let body = ByteStream::from_path(path).await.map_err(|e| StorageError::Service { op: "upload_file.body", message: e.to_string() })?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(body)
                .send()
                .await
                .map_err(|e| StorageError::service("put_object", e))?;
            Ok(size)
        })
        .await
    }

    /// Stores a small object (a model artifact) from memory.
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        observe("put_bytes", async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(bytes))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| StorageError::service("put_object", e))
        })
        .await?;
        Ok(())
    }

    /// Reads a small object (a model artifact) into memory, refusing one larger than `max`
    /// bytes rather than growing without bound.
    pub async fn get_bytes(&self, key: &str, max: u64) -> Result<Vec<u8>, StorageError> {
        observe("get_bytes", async {
            let out = self.get_object(key).await?;
            let mut body = out.body;
            let mut bytes = Vec::new();
            while let Some(chunk) = body.try_next().await.map_err(|e| StorageError::Service { op: "get_object.body", message: e.to_string() })? {
                if (bytes.len() + chunk.len()) as u64 > max {
                    return Err(StorageError::Service { op: "get_bytes", message: format!("{key} is larger than {max} bytes") });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        })
        .await
    }

    /// Reads an object through once, returning its size, SHA-256 and recognised container.
    /// Used to check a presigned upload without holding it in memory.
    pub async fn inspect(&self, key: &str) -> Result<StoredObject, StorageError> {
        observe("inspect", self.inspect_inner(key)).await
    }

    async fn inspect_inner(&self, key: &str) -> Result<StoredObject, StorageError> {
        let out = self.get_object(key).await?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_LEN);
        let mut size = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| StorageError::Service { op: "get_object.body", message: e.to_string() })? {
            if head.len() < SNIFF_LEN {
                let need = SNIFF_LEN - head.len();
                head.extend_from_slice(&chunk[..need.min(chunk.len())]);
            }
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        if size == 0 {
            return Err(StorageError::Empty);
        }
        let container = sniff_container(&head).ok_or(StorageError::NotAVideo)?;
        Ok(StoredObject { size_bytes: size as i64, sha256: hex::encode(hasher.finalize()), container: container.to_owned() })
    }

    /// Size and stored SHA-256 of an object, or `None` when it does not exist; reads no bytes.
    /// The SHA-256 is there when the object was PUT whole with an `x-amz-checksum-sha256` that
    /// storage verified against the body (S3, MinIO and the development server all do).
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StorageError> {
        let started = std::time::Instant::now();
        let out = self.client.head_object().bucket(&self.bucket).key(key).checksum_mode(ChecksumMode::Enabled).send().await;
        record("head", out.is_ok(), started);
        match out {
            Ok(out) => Ok(Some(ObjectHead {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                sha256: out.checksum_sha256().and_then(sha256_hex_of_base64),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(StorageError::service("head_object", e)),
        }
    }

    /// The container of an object, recognised from its first bytes (one ranged GET).
    pub async fn sniff(&self, key: &str) -> Result<&'static str, StorageError> {
        observe("sniff", async {
            let out = self.client.get_object().bucket(&self.bucket).key(key).range(format!("bytes=0-{}", SNIFF_LEN - 1)).send().await.map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    StorageError::NotFound(key.to_owned())
                } else {
                    StorageError::service("get_object", e)
                }
            })?;
            let mut body = out.body;
            let mut head = Vec::with_capacity(SNIFF_LEN);
            while let Some(chunk) = body.try_next().await.map_err(|e| StorageError::Service { op: "get_object.body", message: e.to_string() })? {
                // A server that ignores the range sends everything: stop once there is enough.
                head.extend_from_slice(&chunk[..(SNIFF_LEN - head.len()).min(chunk.len())]);
                if head.len() == SNIFF_LEN {
                    break;
                }
            }
            if head.is_empty() {
                return Err(StorageError::Empty);
            }
            sniff_container(&head).ok_or(StorageError::NotAVideo)
        })
        .await
    }

    /// Size of an object, or `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let started = std::time::Instant::now();
        let out = self.client.head_object().bucket(&self.bucket).key(key).send().await;
        record("head", out.is_ok(), started);
        match out {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(StorageError::service("head_object", e)),
        }
    }

    /// Deletes an object (absent objects are fine).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        observe("delete", async {
            self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(|e| StorageError::service("delete_object", e))
        })
        .await?;
        Ok(())
    }

    /// Deletes many objects, up to 1,000 per request (absent objects are fine). Fails when
    /// storage refuses any key, naming the first; the keys it did delete stay deleted, so a
    /// caller simply tries the whole set again.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StorageError> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build().map_err(|e| StorageError::Service { op: "delete_objects", message: e.to_string() }))
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StorageError::Service { op: "delete_objects", message: e.to_string() })?;
            let out = observe("delete_many", async {
                self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await.map_err(|e| StorageError::service("delete_objects", e))
            })
            .await?;
            if let Some(e) = out.errors().first() {
                let message = format!("{}: {}", e.key().unwrap_or("?"), e.message().or(e.code()).unwrap_or("refused"));
                return Err(StorageError::Service { op: "delete_objects", message });
            }
        }
        Ok(())
    }

    /// Deletes every object under `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        let keys = self.list_keys(prefix).await?;
        self.delete_many(&keys).await?;
        Ok(keys.len())
    }

    /// Keys of every object under `prefix`, in key order (all pages of the listing).
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        observe("list", async {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| StorageError::service("list_objects_v2", e))?;
                keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    /// A presigned PUT URL for a direct upload of any size.
    pub async fn presign_put(&self, key: &str, content_type: Option<&str>) -> Result<String, StorageError> {
        self.presign_put_with_length(key, content_type, None).await
    }

    /// A presigned PUT for a direct upload of exactly `content_length` bytes, and, when
    /// `sha256` is given, of exactly those bytes. The length (and the `x-amz-checksum-sha256`
    /// header) are signed, so the storage service refuses a PUT of any other size or without
    /// that checksum, and it verifies the body against the checksum before it stores it.
    pub async fn presign_put_sized(
        &self,
        key: &str,
        content_type: Option<&str>,
        content_length: u64,
        sha256: Option<&[u8; 32]>,
    ) -> Result<PresignedPut, StorageError> {
        let length = i64::try_from(content_length).map_err(|_| StorageError::Service { op: "presign", message: "length out of range".into() })?;
        let req = self.presigned_put(key, content_type, Some(length), sha256.map(|d| base64::engine::general_purpose::STANDARD.encode(d))).await?;
        let headers = req.headers().map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned())).collect();
        Ok(PresignedPut { url: req.uri().to_owned(), headers })
    }

    async fn presign_put_with_length(&self, key: &str, content_type: Option<&str>, length: Option<i64>) -> Result<String, StorageError> {
        Ok(self.presigned_put(key, content_type, length, None).await?.uri().to_owned())
    }

    /// A PUT of `key` presigned for this store's lifetime, for the length and base64 SHA-256
    /// given.
    async fn presigned_put(
        &self,
        key: &str,
        content_type: Option<&str>,
        length: Option<i64>,
        sha256: Option<String>,
    ) -> Result<aws_sdk_s3::presigning::PresignedRequest, StorageError> {
        let cfg = PresigningConfig::expires_in(self.presign_ttl).map_err(|e| StorageError::Service { op: "presign", message: e.to_string() })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .set_content_length(length)
            .set_checksum_sha256(sha256)
            .presigned(cfg)
            .await
            .map_err(|e| StorageError::service("presign_put", e))
    }

    /// A presigned GET URL.
    pub async fn presign_get(&self, key: &str) -> Result<String, StorageError> {
        let cfg = PresigningConfig::expires_in(self.presign_ttl).map_err(|e| StorageError::Service { op: "presign", message: e.to_string() })?;
        let req = self.client.get_object().bucket(&self.bucket).key(key).presigned(cfg).await.map_err(|e| StorageError::service("presign_get", e))?;
        Ok(req.uri().to_owned())
    }

    /// How long presigned URLs live.
    pub fn presign_ttl(&self) -> Duration {
        self.presign_ttl
    }
}

/// What storage knows of an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the whole object, when storage verified and kept one.
    pub sha256: Option<String>,
}

/// A presigned PUT: the URL, and the headers the client must send with exactly these values
/// (they are part of the signature).
#[derive(Debug, Clone)]
pub struct PresignedPut {
    /// PUT the bytes here.
    pub url: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

/// The hex form of a base64 `x-amz-checksum-sha256`; `None` for anything that is not a whole
/// SHA-256 (a multipart upload's checksum of checksums ends in `-N`).
fn sha256_hex_of_base64(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (raw.len() == 32).then(|| hex::encode(raw))
}

/// How much of a refused body is still read, so that a client that is still sending reads the
/// refusal instead of a reset connection. Larger bodies are cut off.
const REFUSAL_DRAIN_BYTES: u64 = 8 * 1024 * 1024;

async fn drain<S>(mut body: std::pin::Pin<&mut S>, max: u64)
where
    S: Stream<Item = Result<Bytes, std::io::Error>>,
{
    let mut read = 0u64;
    while read < max {
        match tokio::time::timeout(std::time::Duration::from_secs(2), body.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len() as u64,
            _ => return,
        }
    }
}

fn record(op: &'static str, ok: bool, started: std::time::Instant) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::get().s3_call_seconds.with_label_values(&[op, outcome]).observe(started.elapsed().as_secs_f64());
}

/// Times a storage call. Client errors (a refused upload) count as `ok` for the service: the
/// metric watches storage health, not user input.
async fn observe<T>(op: &'static str, fut: impl std::future::Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
    let started = std::time::Instant::now();
    let out = fut.await;
    record(op, out.as_ref().map_or_else(StorageError::is_client_error, |_| true), started);
    out
}

#[cfg(test)]
mod tests {
    use super::sha256_hex_of_base64;

    #[test]
    fn stored_checksums_are_read_only_when_they_are_a_whole_sha256() {
        // SHA-256 of "abc".
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex_of_base64("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=").as_deref(), Some(hex));
        assert_eq!(sha256_hex_of_base64("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=-3"), None);
        assert_eq!(sha256_hex_of_base64("AAAA"), None);
        assert_eq!(sha256_hex_of_base64(""), None);
    }
}
