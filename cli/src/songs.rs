//! `reelq songs`: the song catalogue that the `song` analysis matches against (admin keys).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::args::OutputArgs;
use crate::client::ApiClient;
use crate::model::JobStatus;
use crate::render;
use crate::wait::{self, Outcome};

#[derive(Debug, Args)]
pub struct SongsArgs {
    #[command(subcommand)]
    pub command: SongsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SongsCommand {
    /// Add a track: upload FILE (audio, or a video whose sound is the track) and fingerprint it
    /// into the catalogue; or, with only --music-id, fingerprint a pulled sound whose audio a
    /// dump brought. Waits for the fingerprint and prints the track id.
    Add(AddArgs),
    /// Add every pulled sound not in the catalogue yet whose audio is at hand; prints the jobs.
    Pulled(PulledArgs),
    /// List the catalogue, newest first.
    List(ListArgs),
    /// Remove a track and its fingerprint.
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The track's audio file.
    #[arg(required_unless_present = "music_id")]
    pub file: Option<PathBuf>,
    /// The track's title (required with a file).
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    #[arg(long, value_name = "TEXT")]
    pub artist: Option<String>,
    /// The pulled sound (TikTok music id) the track is.
    #[arg(long, value_name = "ID")]
    pub music_id: Option<String>,
    /// Print the job id at once instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PulledArgs {
    /// At most this many sounds, the most used first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,
    /// Page cursor printed by a previous listing.
    #[arg(long, value_name = "TRACK_ID")]
    pub before: Option<i64>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    pub track_id: i64,
}

/// How long `songs add` waits for the fingerprint (a 15-minute track takes seconds).
const ADD_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(client: &ApiClient, args: SongsArgs) -> Result<ExitCode> {
    match args.command {
        SongsCommand::Add(a) => add(client, a).await,
        SongsCommand::Pulled(a) => {
            let raw = client.post_json(&format!("/v1/admin/songs/pulled?limit={}", a.limit), &json!({})).await?;
            let jobs = raw["jobs"].as_array().cloned().unwrap_or_default();
            let text = if jobs.is_empty() {
                "no pulled sound is missing from the catalogue with its audio at hand\n".to_owned()
            } else {
                jobs.iter().map(|j| format!("{}  job {}\n", j["music_id"].as_str().unwrap_or("?"), j["job_id"].as_str().unwrap_or("?"))).collect()
            };
            print(&raw, &text, a.output.json)
        }
        SongsCommand::List(a) => {
            let mut path = format!("/v1/admin/songs?limit={}", a.limit);
            if let Some(b) = a.before {
                path.push_str(&format!("&before={b}"));
            }
            let raw = client.get_json(&path).await?;
            print(&raw, &song_list(&raw), a.output.json)
        }
        SongsCommand::Rm(a) => {
            client.delete(&format!("/v1/admin/songs/{}", a.track_id)).await?;
            println!("track {} removed", a.track_id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn add(client: &ApiClient, a: AddArgs) -> Result<ExitCode> {
    let audio_id: Option<Uuid> = match &a.file {
        Some(path) => {
            anyhow::ensure!(a.title.as_deref().is_some_and(|t| !t.trim().is_empty()), "--title is required with a file");
            Some(crate::upload::upload(client, path, !a.output.json).await?.id)
        }
        None => None,
    };
    let body = json!({
        "audio_id": audio_id,
        "music_id": a.music_id,
        "title": a.title.unwrap_or_default(),
        "artist": a.artist.unwrap_or_default(),
    });
    let job = client.post_json("/v1/admin/songs", &body).await?;
    let id: Uuid = job["id"].as_str().and_then(|s| s.parse().ok()).context("the API's answer names no job")?;
    if a.no_wait {
        return print(&job, &format!("{id}\n"), a.output.json);
    }
    match wait::wait_for_job(client, id, ADD_TIMEOUT, !a.output.json).await? {
        Outcome::Finished(job) if job.status == JobStatus::Succeeded => {
            let added = job.results.as_ref().and_then(|r| r.get("add_song")).map(|r| r.payload.clone()).unwrap_or(Value::Null);
            let text = format!(
                "track {}: {} · {} ({:.0} s fingerprinted)\n",
                added["track_id"],
                added["title"].as_str().unwrap_or(""),
                added["artist"].as_str().filter(|a| !a.is_empty()).unwrap_or("unknown"),
                added["duration_secs"].as_f64().unwrap_or(0.0)
            );
            print(&added, &text, a.output.json)
        }
        Outcome::Finished(job) => {
            let e = job.error.as_ref();
            eprintln!("adding the song failed: {}: {}", e.and_then(|e| e.code.as_deref()).unwrap_or("?"), e.map_or("", |e| e.message.as_str()));
            Ok(ExitCode::from(2))
        }
        Outcome::TimedOut { .. } => {
            eprintln!("the song is still being added: job {id}");
            Ok(ExitCode::from(3))
        }
    }
}

fn print(raw: &Value, text: &str, json: bool) -> Result<ExitCode> {
    print!("{}", if json { render::pretty_json(raw) } else { text.to_owned() });
    Ok(ExitCode::SUCCESS)
}

/// The catalogue as one line per track.
fn song_list(page: &Value) -> String {
    let tracks = page["tracks"].as_array().cloned().unwrap_or_default();
    let mut out = format!("{} track(s) in the catalogue\n", page["total"].as_i64().unwrap_or(0));
    for t in &tracks {
        out.push_str(&format!(
            "{:>6}  {} · {}  {:.0} s{}\n",
            t["id"].as_i64().unwrap_or(0),
            t["title"].as_str().filter(|s| !s.is_empty()).unwrap_or("(untitled)"),
            t["artist"].as_str().filter(|s| !s.is_empty()).unwrap_or("unknown"),
            t["duration_secs"].as_f64().unwrap_or(0.0),
            t["music_id"].as_str().map(|m| format!("  sound {m}")).unwrap_or_default()
        ));
    }
    if let Some(next) = page["next_before"].as_i64() {
        out.push_str(&format!("more: --before {next}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_lists_one_line_per_track() {
        let page = json!({
            "tracks": [{ "id": 7, "title": "Tune", "artist": "", "music_id": "m1", "duration_secs": 40.2 }],
            "total": 9, "next_before": 7
        });
        let text = song_list(&page);
        assert!(text.starts_with("9 track(s)"), "{text}");
        assert!(text.contains("     7  Tune · unknown  40 s  sound m1"), "{text}");
        assert!(text.ends_with("more: --before 7\n"), "{text}");
    }
}
