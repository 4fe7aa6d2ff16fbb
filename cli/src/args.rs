//! The command line of `reelq`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "reelq", version, about = "Submit videos to reelq, wait for their analyses, inspect jobs")]
pub struct Cli {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Base URL of the reelq API.
    #[arg(long, env = "REELQ_API_URL", default_value = "http://127.0.0.1:8080", global = true, value_name = "URL")]
    pub api_url: String,
    /// API key, sent as a bearer token (required).
    // Optional here only because clap cannot make a global option required; `commands::run`
    // refuses to go on without it. `hide_env_values` keeps the key out of `--help`.
    #[arg(long, env = "REELQ_API_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse a video file here, in-process, with no services: the same pipeline a worker
    /// runs. Exits 2 with the job's error code when the file is refused.
    Analyze(AnalyzeArgs),
    /// Upload a video and submit a job for it; prints the job id.
    Submit(SubmitArgs),
    /// Submit one job per video in few requests: files are uploaded first, stored video ids
    /// are used as they are. Prints one line per item; exits 2 when any item was refused.
    SubmitMany(SubmitManyArgs),
    /// Show one job.
    Status(JobArgs),
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// Cancel a queued or running job.
    Cancel(JobArgs),
    /// Delete an uploaded video and everything made from it: its jobs (running ones are
    /// stopped), results, outputs and feedback. Cannot be undone.
    Delete(DeleteArgs),
    /// Wait for a job to end and show its result.
    Wait(WaitArgs),
    /// List trained model versions (hashtag classifier, hashtag ranker, virality regressor) and their figures.
    Models(ModelsArgs),
    /// Roll a model back to the version promoted before it (admin keys).
    Rollback(RollbackArgs),
    /// List jobs that used up their attempts on transient faults (admin keys).
    DeadLetters(DeadLettersArgs),
    /// Run dead-lettered jobs again once their cause is fixed, keeping their history (admin keys).
    Replay(ReplayArgs),
    /// The song catalogue that the `song` analysis recognises tracks against (admin keys).
    Songs(crate::songs::SongsArgs),
}

#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// Jobs per page, most recently failed first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,
    /// Page cursor printed by a previous listing.
    #[arg(long, value_name = "JOB_ID")]
    pub before: Option<Uuid>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["id", "all"]))]
pub struct ReplayArgs {
    /// The dead-lettered job to replay.
    pub id: Option<Uuid>,
    /// Replay every dead-lettered job.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Only this model: `hashtags`, `ranker` or `virality`.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// How many versions, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// `hashtags`, `ranker` or `virality`.
    pub model: String,
    /// The version to return to (it must have been promoted before); by default the previous one.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The video file.
    pub file: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "probe,quality,ocr,audio,transcript,hashtags", value_name = "LIST", help = local_analyses_help())]
    pub analyses: Vec<String>,
    /// The caption the video will be posted with (more evidence for hashtags).
    #[arg(long, value_name = "TEXT")]
    pub caption: Option<String>,
    /// Also say where the time went: probe, decode, each analysis and the model calls.
    #[arg(long)]
    pub timings: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The video file to upload.
    pub file: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "probe", value_name = "LIST", help = queued_analyses_help())]
    pub analyses: Vec<String>,
    /// Dispatch lane.
    #[arg(long, value_enum, default_value_t = Priority::Interactive)]
    pub priority: Priority,
    /// URL called with the job when it ends.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Makes the submission safe to repeat: the same key and request return the same job.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait for the job to end and show its result.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SubmitManyArgs {
    /// Video files to upload, or ids of stored videos.
    #[arg(value_name = "FILE|VIDEO_ID")]
    pub items: Vec<String>,
    /// Also read items from this file, one per line (`-` for stdin); blank lines and lines
    /// starting with `#` are skipped.
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "probe", value_name = "LIST", help = queued_analyses_help())]
    pub analyses: Vec<String>,
    /// Dispatch lane.
    #[arg(long, value_enum, default_value_t = Priority::Batch)]
    pub priority: Priority,
    /// URL called with each job when it ends.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Makes the run safe to repeat for stored video ids: each item's key is PREFIX:VIDEO_ID,
    /// so a second run answers the jobs the first one created instead of making new ones. A file
    /// is uploaded again on every run, as a new video with a new job.
    #[arg(long, value_name = "PREFIX")]
    pub idempotency_prefix: Option<String>,
    /// Jobs per request (the server accepts up to its `api.max_batch_jobs`, 1000 by default).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub uploads: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// Job id.
    pub id: Uuid,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Video id.
    pub video_id: Uuid,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Job id.
    pub id: Uuid,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Jobs per page.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Page cursor printed by a previous listing.
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print the API's JSON on stdout instead of tables, with no progress display.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Priority {
    /// Somebody is waiting for the result.
    Interactive,
    /// Bulk work that may wait.
    Batch,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Batch => "batch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl StatusFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// `analyze --analyses` help: the analyses that run locally, from the catalogue.
fn local_analyses_help() -> String {
    format!("Analyses to run, comma-separated: {}", crate::analyze::local_names().join(", "))
}

/// `submit --analyses` help: the analyses a client may ask for, from the catalogue (internal
/// ones are never listed).
fn queued_analyses_help() -> String {
    use reelq_core::catalogue::{CATALOGUE, Visibility};
    let public: Vec<&str> = CATALOGUE.iter().filter(|s| s.visibility == Visibility::Public).map(|s| s.name.as_str()).collect();
    let diagnostic: Vec<&str> = CATALOGUE.iter().filter(|s| s.visibility == Visibility::Diagnostic).map(|s| s.name.as_str()).collect();
    format!("Analyses to run, comma-separated: {} (diagnostic, where the server allows it: {})", public.join(", "), diagnostic.join(", "))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_defaults_and_global_options_after_the_subcommand() {
        let cli = Cli::try_parse_from(["reelq", "submit", "a.mp4", "--api-key", "k", "--api-url", "http://x:1"]).expect("parses");
        assert_eq!(cli.api.api_key.as_deref(), Some("k"));
        assert_eq!(cli.api.api_url, "http://x:1");
        let Command::Submit(s) = cli.command else { panic!("not submit") };
        assert_eq!(s.analyses, ["probe"]);
        assert_eq!(s.priority, Priority::Interactive);
        assert_eq!(s.timeout, 600);
        assert!(!s.wait && !s.output.json);
    }

    #[test]
    fn analyses_split_on_commas() {
        let cli = Cli::try_parse_from(["reelq", "submit", "a.mp4", "--analyses", "probe,noop", "--priority", "batch"]).expect("parses");
        let Command::Submit(s) = cli.command else { panic!("not submit") };
        assert_eq!(s.analyses, ["probe", "noop"]);
        assert_eq!(s.priority.as_str(), "batch");
    }

    #[test]
    fn replay_takes_one_job_or_all_but_not_both() {
        let id = "0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e6f";
        let cli = Cli::try_parse_from(["reelq", "replay", id]).expect("parses");
        let Command::Replay(r) = cli.command else { panic!("not replay") };
        assert_eq!(r.id.map(|u| u.to_string()).as_deref(), Some(id));
        assert!(!r.all);
        let cli = Cli::try_parse_from(["reelq", "replay", "--all"]).expect("parses");
        let Command::Replay(r) = cli.command else { panic!("not replay") };
        assert!(r.all && r.id.is_none());
        assert!(Cli::try_parse_from(["reelq", "replay"]).is_err(), "one of JOB_ID and --all is required");
        assert!(Cli::try_parse_from(["reelq", "replay", id, "--all"]).is_err(), "not both");
        assert!(Cli::try_parse_from(["reelq", "dead-letters", "--limit", "201"]).is_err());
    }

    #[test]
    fn job_ids_must_be_uuids_and_limit_positive() {
        assert!(Cli::try_parse_from(["reelq", "status", "not-a-uuid"]).is_err());
        assert!(Cli::try_parse_from(["reelq", "jobs", "--limit", "0"]).is_err());
        let cli = Cli::try_parse_from(["reelq", "jobs", "--status", "failed"]).expect("parses");
        let Command::Jobs(j) = cli.command else { panic!("not jobs") };
        assert_eq!(j.limit, 20);
        assert_eq!(j.status.map(StatusFilter::as_str), Some("failed"));
    }
}
