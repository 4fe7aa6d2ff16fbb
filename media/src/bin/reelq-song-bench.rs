//! Song-recognition benchmark: a catalogue of synthetic tracks, excerpts of them (clean, 10 dB
//! quieter, re-encoded as 64 kbit/s MP3, under espeak-ng speech from 12 dB below the music to 6 dB above it)
//! and excerpts of tracks not in the catalogue. Prints the match rate, false matches, offset
//! errors and the time per excerpt. Asserts nothing.
//!
//! ```text
//! cargo run --release -p reelq-media --bin reelq-song-bench [-- --tracks 1000 --track-secs 30 --excerpts 60 --excerpt-secs 12]
//! ```

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use reelq_media::fingerprint::{Catalogue, fingerprint, synthetic_song};

const RATE: u32 = 16_000;

fn flag(args: &[String], name: &str, default: f64) -> f64 {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt().max(1e-6)
}

fn espeak(text: &str) -> Vec<f32> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("espeak-ng -v en-us -s 150 --stdout '{text}' | ffmpeg -v error -i - -ac 1 -ar 16000 -f f32le -"))
        .output()
        .expect("espeak-ng and ffmpeg are installed");
    out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Through the ffmpeg CLI as 64 kbit/s MP3 and back.
fn mp3_round_trip(x: &[f32]) -> Vec<f32> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ffmpeg -v error -f f32le -ar 16000 -ac 1 -i - -c:a libmp3lame -b:a 64k -f mp3 - | ffmpeg -v error -i - -ac 1 -ar 16000 -f f32le -")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let bytes: Vec<u8> = x.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().expect("ffmpeg runs");
    let _ = writer.join();
    out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tracks = flag(&args, "--tracks", 1000.0) as u64;
    let track_secs = flag(&args, "--track-secs", 30.0);
    let excerpts = flag(&args, "--excerpts", 60.0) as u64;
    let excerpt_secs = flag(&args, "--excerpt-secs", 12.0);

    let started = Instant::now();
    let mut catalogue = Catalogue::default();
    let mut fp_secs = 0.0;
    for seed in 0..tracks {
        let song = synthetic_song(seed, track_secs, RATE);
        let t = Instant::now();
        catalogue.insert(seed, fingerprint(&song, RATE));
        fp_secs += t.elapsed().as_secs_f64();
    }
    println!(
        "catalogue: {tracks} tracks of {track_secs} s built in {:.1} s (fingerprinting {:.1} s, {:.0}x real time)",
        started.elapsed().as_secs_f64(),
        fp_secs,
        tracks as f64 * track_secs / fp_secs
    );

    let speech = espeak(
        "Hey everyone, welcome back. Today I am showing you my morning routine, from coffee to the gym, and what I eat before work. Let me know in the comments what you want to see next.",
    );
    let len = (excerpt_secs * f64::from(RATE)) as usize;
    let kinds = ["clean", "10 dB quieter", "mp3 64k", "speech -12 dB", "speech -6 dB", "speech 0 dB", "speech +6 dB"];
    println!("{:<16} {:>8} {:>8} {:>10} {:>12} {:>14}", "excerpt", "found", "wrong", "offset ±s", "median ms", "mean BER");
    for kind in kinds {
        let (mut found, mut wrong, mut off, mut times, mut ber) = (0, 0, 0.0f64, Vec::new(), 0.0);
        for e in 0..excerpts {
            let track = (e * 7919) % tracks;
            let from = (e as f64 * 1.7) % (track_secs - excerpt_secs).max(0.0);
            let song = synthetic_song(track, track_secs, RATE);
            let a = (from * f64::from(RATE)) as usize;
            let mut clip = song[a..(a + len).min(song.len())].to_vec();
            match kind {
                "10 dB quieter" => clip.iter_mut().for_each(|s| *s *= 0.316),
                "mp3 64k" => clip = mp3_round_trip(&clip),
                k if k.starts_with("speech") => {
                    let gain = match k {
                        "speech -12 dB" => 0.25,
                        "speech -6 dB" => 0.5,
                        "speech 0 dB" => 1.0,
                        _ => 2.0,
                    };
                    let (music, voice) = (rms(&clip), rms(&speech));
                    for (k, s) in clip.iter_mut().enumerate() {
                        // Speech at `gain` times the music's RMS, both halved so the sum stays in range.
                        *s = (*s + speech[(k + e as usize * 8000) % speech.len()] * (music / voice) * gain) * 0.5;
                    }
                }
                _ => {}
            }
            let t = Instant::now();
            let hit = catalogue.identify(&fingerprint(&clip, RATE));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if let Some(m) = hit {
                if m.track == track {
                    found += 1;
                    off = off.max((m.offset_secs - from).abs());
                    ber += m.bit_error_rate;
                } else {
                    wrong += 1;
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let mean_ber = if found > 0 { ber / f64::from(found) } else { f64::NAN };
        println!("{kind:<16} {found:>5}/{excerpts:<2} {wrong:>8} {off:>10.2} {:>12.1} {mean_ber:>14.3}", times[times.len() / 2]);
    }
    // Tracks that are not in the catalogue: every match is a false one.
    let mut false_matches = 0;
    for e in 0..excerpts {
        let song = synthetic_song(1_000_000 + e, excerpt_secs + 1.0, RATE);
        if catalogue.identify(&fingerprint(&song[..len], RATE)).is_some() {
            false_matches += 1;
        }
    }
    println!("not in the catalogue: {false_matches}/{excerpts} matched (false matches)");
}
