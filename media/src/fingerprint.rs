//! Acoustic fingerprints and finding which known track a short excerpt comes from.
//!
//! A fingerprint is Chromaprint's (its `test2` configuration, through the pure-Rust
//! `rusty-chromaprint`): one 32-bit item every [`ITEM_SECS`] seconds, each bit the sign of a
//! filter over the chroma (pitch-class) image, so it survives re-encoding and gain changes and
//! degrades gracefully under speech.
//!
//! Matching an excerpt against a catalogue has two steps. Votes: two [`HASH_BITS`]-bit keys of
//! every item are looked up in an inverted index of the catalogue, and each hit votes for a
//! (track, offset) pair. Verification: the best-voted pairs are aligned in full and their
//! bit error rate measured; unrelated audio differs in about half its bits, the same recording
//! in far fewer, and the best alignment counts only when it is well below the rate the other
//! candidates reach by chance for the same excerpt. The index is plain data (`hash → (track, position)`), so it can live in memory
//! or in a database table with an index on the hash.

use std::collections::HashMap;

use rusty_chromaprint::{Configuration, Fingerprinter};

/// Seconds of audio per fingerprint item (4096 / 3 samples at 11,025 Hz).
pub const ITEM_SECS: f64 = 4096.0 / 3.0 / 11_025.0;

/// Bits of an item used as its index key.
pub const HASH_BITS: u32 = 12;

/// An alignment whose bit error rate is above this is never taken for the same recording.
pub const MAX_BIT_ERROR_RATE: f64 = 0.34;

/// How far below chance the best alignment's bit error rate must be: chance is the median rate
/// of the other tracks' candidates for the same excerpt (the closest the catalogue comes by
/// accident, about 0.45), so a match is judged against what this excerpt scores with songs it
/// is not, not against a fixed line. The same recording under loud speech scores 0.25–0.33
/// against 0.45; a stranger's best accident scores within about 0.08 of its other candidates.
pub const MIN_MARGIN: f64 = 0.12;

/// Aligned items (about 9 s) at which [`MIN_MARGIN`] applies; a shorter overlap (an excerpt
/// against a track's last seconds) scatters more by chance and needs a margin larger by the
/// square root of the ratio.
pub const FULL_ITEMS: usize = 72;

/// Chance, when too few other candidates were proposed to measure it.
const CHANCE: f64 = 0.45;

/// Best-voted (track, offset) pairs aligned in full. More find more songs under loud speech
/// (0 dB: 12/60 at 20, 23/60 at 50, 26/60 at 100) but give chance more tries (false matches
/// among 60 strangers: 0, 0, 2).
pub const CANDIDATES: usize = 50;

/// Fewest aligned items a match needs (about 5 s).
pub const MIN_ALIGNED_ITEMS: usize = 40;

fn config() -> Configuration {
    Configuration::preset_test2()
}

/// The fingerprint of mono audio at `sample_rate` (samples in −1..1).
pub fn fingerprint(samples: &[f32], sample_rate: u32) -> Vec<u32> {
    let mut printer = Fingerprinter::new(&config());
    if printer.start(sample_rate, 1).is_err() {
        return Vec::new();
    }
    let pcm: Vec<i16> = samples.iter().map(|s| (s.clamp(-1.0, 1.0) * 32_767.0) as i16).collect();
    for chunk in pcm.chunks(65_536) {
        printer.consume(chunk);
    }
    printer.finish();
    printer.fingerprint().to_vec()
}

/// An item's index keys: its top [`HASH_BITS`] bits, and the next [`HASH_BITS`] (tagged apart),
/// so that noise flipping a bit of one half still leaves the other to vote.
pub fn keys(item: u32) -> [u32; 2] {
    let mask = (1 << HASH_BITS) - 1;
    [item >> (32 - HASH_BITS), (1 << HASH_BITS) | ((item >> (32 - 2 * HASH_BITS)) & mask)]
}

/// Fraction of differing bits between two aligned runs of items.
pub fn bit_error_rate(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 1.0;
    }
    let differing: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
    f64::from(differing) / (n as f64 * 32.0)
}

/// Where an excerpt was found.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackMatch {
    /// The catalogue's id of the track.
    pub track: u64,
    /// Where in the track the excerpt starts, in seconds.
    pub offset_secs: f64,
    /// 0–1, from how far the bit error rate is below chance (see [`decide`]): 1 for a clean
    /// copy, 0 at the least margin a match needs.
    pub confidence: f64,
    pub bit_error_rate: f64,
    /// Items compared.
    pub aligned_items: usize,
}

/// Tracks' fingerprints with an inverted index of their items, in memory.
#[derive(Debug, Default)]
pub struct Catalogue {
    tracks: HashMap<u64, Vec<u32>>,
    index: HashMap<u32, Vec<(u64, u32)>>,
}

impl Catalogue {
    /// Adds (or replaces) a track.
    pub fn insert(&mut self, track: u64, items: Vec<u32>) {
        if self.tracks.contains_key(&track) {
            for postings in self.index.values_mut() {
                postings.retain(|(t, _)| *t != track);
            }
        }
        for (pos, &item) in items.iter().enumerate() {
            for key in keys(item) {
                self.index.entry(key).or_default().push((track, pos as u32));
            }
        }
        self.tracks.insert(track, items);
    }

    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The track an excerpt's fingerprint comes from, if any.
    pub fn identify(&self, excerpt: &[u32]) -> Option<TrackMatch> {
        let mut votes: HashMap<(u64, i64), u32> = HashMap::new();
        for (i, &item) in excerpt.iter().enumerate() {
            for key in keys(item) {
                for &(track, pos) in self.index.get(&key).into_iter().flatten() {
                    *votes.entry((track, i64::from(pos) - i as i64)).or_default() += 1;
                }
            }
        }
        let mut ranked: Vec<((u64, i64), u32)> = votes.into_iter().filter(|(_, v)| *v >= 2).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        decide(ranked.into_iter().take(CANDIDATES).filter_map(|((track, offset), _)| align(track, self.tracks.get(&track)?, offset, excerpt)).collect())
    }
}

/// Aligns `excerpt` with a track's `items` at `offset` items (or one item either side) and
/// returns the best alignment, without judging it: the second step of matching, for a
/// candidate the votes proposed. `None` when they overlap by fewer than [`MIN_ALIGNED_ITEMS`].
pub fn align(track: u64, items: &[u32], offset: i64, excerpt: &[u32]) -> Option<TrackMatch> {
    (offset - 1..=offset + 1)
        .filter_map(|o| {
            let (t0, e0) = if o >= 0 { (o as usize, 0) } else { (0, (-o) as usize) };
            let n = items.len().saturating_sub(t0).min(excerpt.len().saturating_sub(e0));
            (n >= MIN_ALIGNED_ITEMS).then(|| (o, n, bit_error_rate(&items[t0..t0 + n], &excerpt[e0..e0 + n])))
        })
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(o, n, ber)| TrackMatch { track, offset_secs: o as f64 * ITEM_SECS, confidence: 0.0, bit_error_rate: ber, aligned_items: n })
}

/// The third step: the best of the aligned candidates, if it is the same recording. It must be
/// under [`MAX_BIT_ERROR_RATE`] and at least [`MIN_MARGIN`] (more for a short overlap, see
/// [`FULL_ITEMS`]) below the median rate of the other tracks' candidates. Its confidence grows from 0 at that margin to 1 at a clean copy's.
pub fn decide(aligned: Vec<TrackMatch>) -> Option<TrackMatch> {
    let best = aligned.iter().min_by(|a, b| a.bit_error_rate.total_cmp(&b.bit_error_rate))?.clone();
    let mut others: Vec<f64> = aligned.iter().filter(|m| m.track != best.track).map(|m| m.bit_error_rate).collect();
    others.sort_by(f64::total_cmp);
    let chance = if others.len() >= 3 { others[others.len() / 2] } else { CHANCE };
    let margin = chance - best.bit_error_rate;
    let needed = MIN_MARGIN * (FULL_ITEMS as f64 / best.aligned_items.max(1) as f64).sqrt().max(1.0);
    (best.bit_error_rate <= MAX_BIT_ERROR_RATE && margin >= needed)
        .then(|| TrackMatch { confidence: ((margin - needed) / (chance - needed - 0.05).max(0.05)).clamp(0.0, 1.0), ..best })
}

/// Synthetic music for tests and benchmarks: a seeded melody over chords and a bass line, with
/// a drum-like noise pulse, at `rate`. Different seeds give different songs.
pub fn synthetic_song(seed: u64, secs: f64, rate: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    let tempo = 0.15 + f64::from(next() % 80) / 400.0;
    let root = 45 + (next() % 12) as i32;
    const SCALES: [[i32; 8]; 4] = [[0, 2, 4, 5, 7, 9, 11, 12], [0, 2, 3, 5, 7, 8, 10, 12], [0, 3, 5, 7, 10, 12, 15, 17], [0, 2, 3, 5, 7, 9, 10, 12]];
    let scale = SCALES[(next() % 4) as usize];
    let n = (secs * f64::from(rate)) as usize;
    let notes = (secs / tempo).ceil() as usize + 1;
    let melody: Vec<i32> = (0..notes).map(|_| root + 12 + scale[(next() % 8) as usize]).collect();
    let chords: Vec<i32> = (0..notes / 8 + 1).map(|_| root + scale[(next() % 6) as usize]).collect();
    let noise: Vec<f32> = (0..4096).map(|_| (next() % 2000) as f32 / 1000.0 - 1.0).collect();
    let freq = |midi: i32| 440.0 * 2f64.powf(f64::from(midi - 69) / 12.0);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let k = (t / tempo) as usize;
            let in_note = t - k as f64 * tempo;
            let envelope = (-in_note * 6.0).exp();
            let m = freq(melody[k.min(melody.len() - 1)]);
            let c = freq(chords[(k / 8).min(chords.len() - 1)]);
            let tau = std::f64::consts::TAU;
            let lead = ((tau * m * t).sin() + 0.4 * (tau * 2.0 * m * t).sin()) * envelope;
            let pad = (tau * c * t).sin() + (tau * c * 1.26 * t).sin() + (tau * c * 1.5 * t).sin();
            let bass = (tau * c / 2.0 * t).sin();
            let drum = if k.is_multiple_of(2) { f64::from(noise[i % noise.len()]) * (-in_note * 30.0).exp() } else { 0.0 };
            (0.3 * lead + 0.12 * pad + 0.2 * bass + 0.15 * drum) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16_000;

    fn excerpt(song: &[f32], from_secs: f64, secs: f64) -> Vec<f32> {
        let a = (from_secs * f64::from(RATE)) as usize;
        song[a..a + (secs * f64::from(RATE)) as usize].to_vec()
    }

    fn catalogue(seeds: std::ops::Range<u64>) -> (Catalogue, Vec<Vec<f32>>) {
        let mut c = Catalogue::default();
        let mut songs = Vec::new();
        for seed in seeds {
            let song = synthetic_song(seed, 40.0, RATE);
            c.insert(seed, fingerprint(&song, RATE));
            songs.push(song);
        }
        (c, songs)
    }

    #[test]
    fn an_excerpt_is_found_at_its_offset_and_a_stranger_is_not() {
        let (c, songs) = catalogue(0..20);
        for (seed, from) in [(3u64, 7.0), (11, 20.5), (17, 0.0)] {
            let clip = excerpt(&songs[seed as usize], from, 12.0);
            let found = c.identify(&fingerprint(&clip, RATE)).expect("found");
            assert_eq!(found.track, seed, "{found:?}");
            assert!((found.offset_secs - from).abs() < 0.5, "offset {} for {from}: {found:?}", found.offset_secs);
            assert!(found.confidence > 0.5, "{found:?}");
        }
        let stranger = excerpt(&synthetic_song(999, 40.0, RATE), 5.0, 12.0);
        assert_eq!(c.identify(&fingerprint(&stranger, RATE)), None);
        assert_eq!(c.identify(&[]), None);
    }

    #[test]
    fn a_quieter_copy_still_matches() {
        let (c, songs) = catalogue(0..5);
        let quiet: Vec<f32> = excerpt(&songs[2], 10.0, 12.0).iter().map(|s| s * 0.3).collect();
        let found = c.identify(&fingerprint(&quiet, RATE)).expect("found");
        assert_eq!(found.track, 2);
        assert!((found.offset_secs - 10.0).abs() < 0.5, "{found:?}");
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt().max(1e-6)
    }

    /// Speech synthesised by espeak-ng at 16 kHz.
    fn espeak(text: &str) -> Vec<f32> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("espeak-ng -v en-us -s 150 --stdout '{text}' | ffmpeg -v error -i - -ac 1 -ar 16000 -f f32le -"))
            .output()
            .expect("espeak-ng and ffmpeg are installed");
        out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    #[test]
    fn music_under_speech_is_found_down_to_six_db_below_it() {
        let (c, songs) = catalogue(0..12);
        let speech = espeak("Hey everyone, welcome back. Today I am showing you my morning routine, from coffee to the gym, and what I eat before work.");
        // Speech 12 dB and 6 dB under the music's level.
        for gain in [0.25f32, 0.5] {
            for (i, song) in songs.iter().enumerate().take(6) {
                let from = 3.0 + i as f64 * 2.5;
                let mut clip = excerpt(song, from, 12.0);
                let (music, voice) = (rms(&clip), rms(&speech));
                for (k, s) in clip.iter_mut().enumerate() {
                    *s = *s * 0.7 + speech[k % speech.len()] * (music / voice) * gain;
                }
                let found = c.identify(&fingerprint(&clip, RATE)).unwrap_or_else(|| panic!("song {i} under speech at {gain}x not found"));
                assert_eq!(found.track, i as u64, "{found:?}");
                assert!((found.offset_secs - from).abs() < 0.5, "{found:?} for {from}");
            }
        }
    }

    #[test]
    fn replacing_a_track_drops_its_old_index_entries() {
        let mut c = Catalogue::default();
        let a = fingerprint(&synthetic_song(1, 20.0, RATE), RATE);
        let b = fingerprint(&synthetic_song(2, 20.0, RATE), RATE);
        c.insert(7, a.clone());
        c.insert(7, b.clone());
        assert_eq!(c.len(), 1);
        assert_eq!(c.identify(&a[20..120]), None);
        assert_eq!(c.identify(&b[20..120]).map(|m| m.track), Some(7));
    }
}
