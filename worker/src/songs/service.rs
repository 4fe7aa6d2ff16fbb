//! A hosted song-recognition service with an AudD-style API: the excerpt goes up as a WAV file
//! in a multipart form with the key as `api_token`; the answer is JSON,
//! `{"status": "success", "result": null | {"title", "artist", "timecode", "song_link"}}` or
//! `{"status": "error", "error": {"error_code", "error_message"}}`.
//!
//! Timeouts, connection failures, 429 and 5xx are retried here with doubling waits; after
//! them the answer is transient and the job is retried like any outage. A spent quota or a
//! rejected key is a refusal with a stable code, which the finding reports.

use std::time::Duration;

use reelq_analysis::song::{Heard, Reach, RecognizeError, Recognizer};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::settings::SongSettings;

/// Confidence given to a service's match: it says which track, not how sure it is.
const SERVICE_CONFIDENCE: f64 = 0.9;

pub struct ServiceRecognizer {
    name: String,
    url: String,
    key: SecretString,
    retries: u32,
    backoff: Duration,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    result: Option<Found>,
    #[serde(default)]
    error: Option<ServiceError>,
}

#[derive(Debug, Deserialize)]
struct Found {
    #[serde(default)]
    title: String,
    #[serde(default)]
    artist: String,
    /// Where in the track the excerpt is, `MM:SS` or `HH:MM:SS`.
    #[serde(default)]
    timecode: Option<String>,
    #[serde(default)]
    song_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ServiceError {
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    error_message: String,
}

/// One attempt's outcome: an answer, or a fault worth another attempt.
enum Attempt {
    Done(Result<Option<Heard>, RecognizeError>),
    Again(String),
}

impl ServiceRecognizer {
    pub fn new(settings: &SongSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.service_timeout_ms))
            .connect_timeout(Duration::from_millis(settings.service_timeout_ms.min(5_000)))
            .build()
            .map_err(|e| format!("song service client: {e}"))?;
        Ok(Self {
            name: settings.service_name.clone(),
            url: settings.service_url.clone(),
            key: settings.service_api_key.clone(),
            retries: settings.service_retries,
            backoff: Duration::from_millis(settings.service_backoff_ms),
            http,
        })
    }

    /// Asks the service about `wav` (a WAV file's bytes), retrying transient faults.
    pub async fn ask(&self, wav: Vec<u8>) -> Result<Option<Heard>, RecognizeError> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
            }
            match self.attempt(wav.clone()).await {
                Attempt::Done(answer) => return answer,
                Attempt::Again(why) => {
                    tracing::warn!(recognizer = %self.name, attempt = attempt + 1, error = %why, "song service did not answer");
                    last = why;
                }
            }
        }
        Err(RecognizeError::Transient(format!("no answer after {} attempts: {last}", self.retries + 1)))
    }

    async fn attempt(&self, wav: Vec<u8>) -> Attempt {
        let file = match reqwest::multipart::Part::bytes(wav).file_name("excerpt.wav").mime_str("audio/wav") {
            Ok(f) => f,
            Err(e) => return Attempt::Done(Err(RecognizeError::Transient(e.to_string()))),
        };
        let mut form = reqwest::multipart::Form::new().part("file", file).text("return", "");
        if !self.key.expose_secret().is_empty() {
            form = form.text("api_token", self.key.expose_secret().to_owned());
        }
        let response = match self.http.post(&self.url).multipart(form).send().await {
            Ok(r) => r,
            // The error names the URL, never the form, so the key stays out of the log.
            Err(e) => return Attempt::Again(e.without_url().to_string()),
        };
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Attempt::Again(format!("HTTP {status}"));
        }
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Attempt::Done(Err(RecognizeError::Refused { code: "unauthorized", message: format!("the service refused the key (HTTP {status})") }));
        }
        if !status.is_success() {
            return Attempt::Done(Err(RecognizeError::Refused { code: "refused", message: format!("the service answered HTTP {status}") }));
        }
        match response.json::<Answer>().await {
            Ok(answer) => Attempt::Done(read(answer)),
            Err(e) => Attempt::Again(format!("unreadable answer: {}", e.without_url())),
        }
    }
}

/// An answer as a match, no match, or a refusal.
fn read(answer: Answer) -> Result<Option<Heard>, RecognizeError> {
    if answer.status == "success" {
        return Ok(answer.result.filter(|f| !f.title.is_empty()).map(|f| Heard {
            title: f.title,
            artist: f.artist,
            track_id: None,
            music_id: None,
            offset_secs: f.timecode.as_deref().and_then(timecode_secs),
            confidence: SERVICE_CONFIDENCE,
            link: f.song_link.filter(|l| l.starts_with("https://") || l.starts_with("http://")),
        }));
    }
    let e = answer.error.unwrap_or(ServiceError { error_code: 0, error_message: "an error without details".into() });
    let code = match e.error_code {
        900 => "unauthorized",
        901 | 902 => "quota_exceeded",
        _ => "refused",
    };
    Err(RecognizeError::Refused { code, message: format!("#{}: {}", e.error_code, e.error_message.chars().take(300).collect::<String>()) })
}

/// `MM:SS` or `HH:MM:SS` in seconds.
fn timecode_secs(t: &str) -> Option<f64> {
    let parts: Vec<u64> = t.split(':').map(|p| p.trim().parse().ok()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [m, s] => Some((m * 60 + s) as f64),
        [h, m, s] => Some((h * 3600 + m * 60 + s) as f64),
        _ => None,
    }
}

/// Mono samples (−1..1) as a 16-bit PCM WAV file.
pub fn wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32_767.0) as i16).to_le_bytes());
    }
    out
}

impl Recognizer for ServiceRecognizer {
    fn name(&self) -> &str {
        &self.name
    }

    fn reach(&self) -> Reach {
        Reach::Remote
    }

    fn recognize(&self, samples: &[f32], sample_rate: u32) -> Result<Option<Heard>, RecognizeError> {
        tokio::runtime::Handle::current().block_on(self.ask(wav(samples, sample_rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: serde_json::Value) -> Result<Option<Heard>, RecognizeError> {
        read(serde_json::from_value(json).expect("an answer"))
    }

    #[test]
    fn answers_are_read_as_matches_misses_and_refusals() {
        let found = answer(serde_json::json!({
            "status": "success",
            "result": { "artist": "Band", "title": "Tune", "timecode": "01:05", "song_link": "https://lis.tn/x", "album": "A" }
        }))
        .expect("answered")
        .expect("a match");
        assert_eq!((found.title.as_str(), found.artist.as_str(), found.offset_secs), ("Tune", "Band", Some(65.0)));
        assert_eq!(found.link.as_deref(), Some("https://lis.tn/x"));
        assert_eq!(answer(serde_json::json!({ "status": "success", "result": null })), Ok(None));

        let quota = answer(serde_json::json!({ "status": "error", "error": { "error_code": 902, "error_message": "limit reached" } }));
        assert!(matches!(quota, Err(RecognizeError::Refused { code: "quota_exceeded", .. })), "{quota:?}");
        let key = answer(serde_json::json!({ "status": "error", "error": { "error_code": 900, "error_message": "wrong token" } }));
        assert!(matches!(key, Err(RecognizeError::Refused { code: "unauthorized", .. })), "{key:?}");
    }

    #[test]
    fn timecodes_and_wav_headers() {
        assert_eq!(timecode_secs("00:56"), Some(56.0));
        assert_eq!(timecode_secs("1:02:03"), Some(3723.0));
        assert_eq!(timecode_secs("soon"), None);
        let w = wav(&[0.0, 1.0, -1.0], 16_000);
        assert_eq!(w.len(), 44 + 6);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([w[24], w[25], w[26], w[27]]), 16_000);
        assert_eq!(i16::from_le_bytes([w[46], w[47]]), 32_767);
    }
}
