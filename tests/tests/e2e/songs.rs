//! The song catalogue in PostgreSQL: tracks are stored with their fingerprints and key index, an
//! excerpt (clean, or under speech) is found at its offset with one indexed candidate query and
//! a verification, and a song outside the catalogue is not matched.

use reelq_shared::db::songs::NewTrack;
use reelq_tests::{TestEnv, count};
use reelq_worker::media::fingerprint::{self, synthetic_song};
use reelq_worker::songs;

const RATE: u32 = 16_000;

fn excerpt(song: &[f32], from: f64, secs: f64) -> Vec<f32> {
    let a = (from * f64::from(RATE)) as usize;
    song[a..a + (secs * f64::from(RATE)) as usize].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excerpt_is_recognised_against_the_catalogue_in_postgres() {
    // Arrange: 25 tracks of 30 s.
    let env = TestEnv::new().await;
    let mut songs_by_id = Vec::new();
    for seed in 0..25u64 {
        let song = tokio::task::spawn_blocking(move || synthetic_song(seed, 30.0, RATE)).await.expect("synthesised");
        let track = NewTrack { title: format!("Track {seed}"), artist: "Synth".into(), ..NewTrack::default() };
        let id = songs::add_track(&env.pool, track, &song, RATE).await.expect("added");
        songs_by_id.push((id, song));
    }
    let items = count(&env.pool, "SELECT sum(cardinality(fingerprint)) FROM tracks").await;
    assert_eq!(count(&env.pool, "SELECT count(*) FROM track_keys").await, 2 * items, "two keys per item");

    // Act and assert: a clean excerpt, and one with speech-like noise 12 dB under the music.
    let (id, song) = &songs_by_id[13];
    let clean = fingerprint::fingerprint(&excerpt(song, 7.0, 12.0), RATE);
    let found = songs::identify(&env.pool, &clean).await.expect("query").expect("found");
    assert_eq!(found.track as i64, *id);
    assert!((found.offset_secs - 7.0).abs() < 0.5, "{found:?}");
    assert!(found.confidence > 0.5, "{found:?}");

    let (id, song) = &songs_by_id[4];
    let mut noisy = excerpt(song, 15.0, 12.0);
    let other = synthetic_song(4242, 12.0, RATE);
    for (s, o) in noisy.iter_mut().zip(&other) {
        *s = *s * 0.8 + o * 0.2;
    }
    let found = songs::identify(&env.pool, &fingerprint::fingerprint(&noisy, RATE)).await.expect("query").expect("found");
    assert_eq!(found.track as i64, *id);
    assert!((found.offset_secs - 15.0).abs() < 0.5, "{found:?}");

    let stranger = fingerprint::fingerprint(&synthetic_song(999_999, 12.0, RATE), RATE);
    assert_eq!(songs::identify(&env.pool, &stranger).await.expect("query"), None, "not in the catalogue");
    assert_eq!(songs::identify(&env.pool, &clean[..10]).await.expect("query"), None, "too short to tell");

    // Removing a track removes its keys.
    sqlx::query("DELETE FROM tracks WHERE id = $1").bind(songs_by_id[13].0).execute(&env.pool).await.expect("delete");
    assert_eq!(songs::identify(&env.pool, &clean).await.expect("query"), None);
    env.cleanup().await;
}
