//! Recognising songs against the catalogue in PostgreSQL: the excerpt's fingerprint keys find
//! candidate (track, offset) pairs with one indexed query, and the best candidates are verified
//! against their stored fingerprints by bit error rate (`reelq_media::fingerprint`).
//! [`CatalogueRecognizer`] puts that behind the pipeline's `Recognizer`; [`service`] asks a
//! hosted recognition service.

pub mod service;

use std::sync::Arc;

use reelq_analysis::song::{Heard, Reach, RecognizeError, Recognizer};
use reelq_media::fingerprint::{self, TrackMatch};
use reelq_shared::db::DbError;
use reelq_shared::db::songs::{self, NewTrack};

use crate::settings::SongSettings;

/// The recognizers `[songs]` configures, catalogue first.
pub fn recognizers(pool: &sqlx::PgPool, settings: &SongSettings) -> Vec<Arc<dyn Recognizer>> {
    let mut out: Vec<Arc<dyn Recognizer>> = Vec::new();
    if settings.catalogue {
        out.push(Arc::new(CatalogueRecognizer { pool: pool.clone() }));
    }
    if !settings.service_url.is_empty() {
        match service::ServiceRecognizer::new(settings) {
            Ok(s) => out.push(Arc::new(s)),
            Err(e) => tracing::error!(error = %e, "the song recognition service is off"),
        }
    }
    out
}

/// The song catalogue in PostgreSQL, as a recognizer. The pipeline runs on the blocking pool,
/// where this waits on the runtime for its queries.
pub struct CatalogueRecognizer {
    pub pool: sqlx::PgPool,
}

impl Recognizer for CatalogueRecognizer {
    fn name(&self) -> &str {
        "catalogue"
    }

    fn reach(&self) -> Reach {
        Reach::Local
    }

    fn recognize(&self, samples: &[f32], sample_rate: u32) -> Result<Option<Heard>, RecognizeError> {
        let excerpt = fingerprint::fingerprint(samples, sample_rate);
        let runtime = tokio::runtime::Handle::current();
        let transient = |e: DbError| RecognizeError::Transient(e.to_string());
        let Some(found) = runtime.block_on(identify(&self.pool, &excerpt)).map_err(transient)? else { return Ok(None) };
        let Some(track) = runtime.block_on(songs::get(&self.pool, found.track as i64)).map_err(transient)? else { return Ok(None) };
        Ok(Some(Heard {
            title: track.title,
            artist: track.artist,
            track_id: Some(track.id),
            music_id: track.music_id,
            offset_secs: Some(found.offset_secs),
            confidence: found.confidence,
            link: None,
        }))
    }
}

/// Adds a track to the catalogue from its mono audio; returns its id.
pub async fn add_track(pool: &sqlx::PgPool, mut track: NewTrack, samples: &[f32], sample_rate: u32) -> Result<i64, DbError> {
    track.fingerprint = fingerprint::fingerprint(samples, sample_rate);
    track.duration_secs = samples.len() as f32 / sample_rate as f32;
    songs::insert(pool, &track, fingerprint::keys).await
}

/// The catalogue track an excerpt's fingerprint comes from, if any.
pub async fn identify(pool: &sqlx::PgPool, excerpt: &[u32]) -> Result<Option<TrackMatch>, DbError> {
    if excerpt.len() < fingerprint::MIN_ALIGNED_ITEMS {
        return Ok(None);
    }
    let (mut keys, mut positions) = (Vec::with_capacity(excerpt.len() * 2), Vec::with_capacity(excerpt.len() * 2));
    for (i, &item) in excerpt.iter().enumerate() {
        for k in fingerprint::keys(item) {
            keys.push(k);
            positions.push(i as i32);
        }
    }
    let candidates = songs::candidates(pool, &keys, &positions, fingerprint::CANDIDATES as i64).await?;
    let mut ids: Vec<i64> = candidates.iter().map(|c| c.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let prints = songs::fingerprints(pool, &ids).await?;
    Ok(fingerprint::decide(
        candidates
            .iter()
            .filter_map(|&(track, offset, _)| {
                let items = &prints.iter().find(|(id, _)| *id == track)?.1;
                fingerprint::align(track as u64, items, offset, excerpt)
            })
            .collect(),
    ))
}
