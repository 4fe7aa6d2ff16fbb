//! Recognising songs against the catalogue in PostgreSQL: the excerpt's fingerprint keys find
//! candidate (track, offset) pairs with one indexed query, and the best candidates are verified
//! against their stored fingerprints by bit error rate (`reelq_media::fingerprint`).

use reelq_media::fingerprint::{self, TrackMatch};
use reelq_shared::db::DbError;
use reelq_shared::db::songs::{self, NewTrack};

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
    Ok(candidates
        .iter()
        .filter_map(|&(track, offset, _)| {
            let items = &prints.iter().find(|(id, _)| *id == track)?.1;
            fingerprint::verify(track as u64, items, offset, excerpt)
        })
        .min_by(|a, b| a.bit_error_rate.total_cmp(&b.bit_error_rate)))
}
