//! What each subcommand does, and what it prints.
//!
//! Results go to stdout (a table, a bare id, or with `--json` the API's JSON and nothing else);
//! progress and notes go to stderr.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use uuid::Uuid;

use crate::args::{Cli, Command, JobArgs, JobsArgs, ReplayArgs, SubmitArgs, WaitArgs};
use crate::client::{ApiClient, ListQuery};
use crate::model::{Job, JobRequest, JobStatus};
use crate::render;
use crate::upload;
use crate::wait::{self, Outcome};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Analyze(args) = cli.command {
        return tokio::task::spawn_blocking(move || crate::analyze::run(args)).await?;
    }
    let key = cli.api.api_key.filter(|k| !k.trim().is_empty()).context("an API key is required: pass --api-key or set REELQ_API_KEY")?;
    let client = ApiClient::new(&cli.api.api_url, key.trim())?;
    match cli.command {
        Command::Submit(args) => submit(&client, args).await,
        Command::SubmitMany(args) => crate::submit_many::run(&client, args).await,
        Command::Status(args) => status(&client, args).await,
        Command::Jobs(args) => jobs(&client, args).await,
        Command::Cancel(args) => cancel(&client, args).await,
        Command::Delete(args) => {
            let raw = client.delete_video(args.video_id).await?;
            let text = if args.output.json {
                render::pretty_json(&raw)
            } else {
                let pending = if raw["complete"] == true { "" } else { "; the rest of its stored files are removed within minutes" };
                format!(
                    "video {} deleted: {} job(s) removed ({} stopped), {} stored file(s){pending}\n",
                    args.video_id,
                    raw["jobs_removed"].as_i64().unwrap_or(0),
                    raw["jobs_cancelled"].as_i64().unwrap_or(0),
                    raw["objects"].as_u64().unwrap_or(0)
                )
            };
            print_out(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Wait(args) => wait(&client, args).await,
        Command::Models(args) => {
            let raw = client.models(args.model.as_deref(), args.limit).await?;
            print_out(&if args.output.json { render::pretty_json(&raw) } else { render::model_list(&raw) })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback(args) => {
            let raw = client.rollback(&args.model, args.to.as_deref()).await?;
            let text = format!("{} rolled back: {} → {}\n", args.model, raw["from"].as_str().unwrap_or("?"), raw["to"].as_str().unwrap_or("?"));
            print_out(&if args.output.json { render::pretty_json(&raw) } else { text })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters(args) => {
            let raw = client.dead_letters(args.limit, args.before).await?;
            print_out(&if args.output.json { render::pretty_json(&raw) } else { render::dead_letter_list(&raw) })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => replay(&client, args).await,
        Command::Songs(args) => crate::songs::run(&client, args).await,
        Command::Analyze(_) => unreachable!("handled above"),
    }
}

async fn submit(client: &ApiClient, args: SubmitArgs) -> Result<ExitCode> {
    let json = args.output.json;
    let analyses: Vec<String> = args.analyses.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
    anyhow::ensure!(!analyses.is_empty(), "--analyses names no analysis");

    let video = upload::upload(client, &args.file, crate::progress::visible(json)).await?;
    if !json {
        let kind = video.container.as_deref().map(|c| format!(", {c}")).unwrap_or_default();
        eprintln!("uploaded {} as video {} ({}{kind})", args.file.display(), video.id, render::bytes(video.size_bytes));
    }

    let request =
        JobRequest { video_id: video.id, analyses, priority: args.priority.as_str(), callback_url: args.callback_url, options: serde_json::Map::new() };
    let job = client.submit_job(&request, args.idempotency_key.as_deref()).await?;

    if !args.wait {
        if json {
            print_out(&render::pretty_json(&job.raw))?;
        } else {
            print_out(&format!("{}\n", job.id))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        eprintln!("submitted job {}", job.id);
    }
    wait_and_report(client, job.id, args.timeout, json).await
}

async fn status(client: &ApiClient, args: JobArgs) -> Result<ExitCode> {
    let job = client.job(args.id).await?;
    show_job(&job, args.output.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn cancel(client: &ApiClient, args: JobArgs) -> Result<ExitCode> {
    let job = client.cancel_job(args.id).await?;
    show_job(&job, args.output.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn wait(client: &ApiClient, args: WaitArgs) -> Result<ExitCode> {
    wait_and_report(client, args.id, args.timeout, args.output.json).await
}

async fn jobs(client: &ApiClient, args: JobsArgs) -> Result<ExitCode> {
    let status = args.status.map(|s| s.as_str());
    let query = ListQuery { status, limit: Some(args.limit), cursor: args.cursor.as_deref() };
    let page = client.list_jobs(&query).await?;
    if args.output.json {
        print_out(&render::pretty_json(&page.raw))?;
    } else {
        let limit = args.limit;
        let next = move |cursor: &str| {
            let mut cmd = String::from("reelq jobs");
            if let Some(s) = status {
                cmd.push_str(&format!(" --status {s}"));
            }
            cmd.push_str(&format!(" --limit {limit} --cursor {cursor}"));
            cmd
        };
        print_out(&render::job_list(&page, &next))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(client: &ApiClient, args: ReplayArgs) -> Result<ExitCode> {
    if let Some(id) = args.id {
        let raw = client.replay(id).await?;
        let rounds = raw["replays"].as_array().map_or(0, Vec::len);
        let text = format!("job {id} queued again (replay {rounds}; follow it with `reelq wait {id}`)\n");
        print_out(&if args.output.json { render::pretty_json(&raw) } else { text })?;
        return Ok(ExitCode::SUCCESS);
    }
    let replayed = client.replay_all().await?;
    if args.output.json {
        print_out(&render::pretty_json(&serde_json::json!({ "replayed": replayed })))?;
    } else if replayed.is_empty() {
        print_out("no dead-lettered jobs to replay\n")?;
    } else {
        let ids: String = replayed.iter().map(|id| format!("{id}\n")).collect();
        eprintln!("{} jobs queued again", replayed.len());
        print_out(&ids)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for the job, prints how it ended and turns that into the exit status: success only
/// when the job succeeded.
async fn wait_and_report(client: &ApiClient, id: Uuid, timeout_secs: u64, json: bool) -> Result<ExitCode> {
    let outcome = wait::wait_for_job(client, id, Duration::from_secs(timeout_secs), crate::progress::visible(json)).await?;
    let job = match outcome {
        Outcome::Finished(job) => job,
        Outcome::TimedOut { last, fault } => {
            let why = match (fault, last) {
                (Some(fault), _) => format!("; last poll failed: {fault}"),
                (None, Some(j)) => format!(" (last seen {}, {}%)", j.status.as_str(), crate::progress::percent(j.progress)),
                (None, None) => String::new(),
            };
            anyhow::bail!("timed out after {timeout_secs} s waiting for job {id}{why}");
        }
    };
    show_job(&job, json)?;
    match job.status {
        JobStatus::Succeeded => Ok(ExitCode::SUCCESS),
        JobStatus::Failed => {
            let (code, message) = match &job.error {
                Some(e) => (e.code.as_deref().unwrap_or("unknown"), e.message.as_str()),
                None => ("unknown", "the API gave no reason"),
            };
            eprintln!("error: job {id} failed ({code}): {message}");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!("error: job {id} was {}", job.status.as_str());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn show_job(job: &Job, json: bool) -> Result<()> {
    if json { print_out(&render::pretty_json(&job.raw)) } else { print_out(&render::job(job)) }
}

/// Writes to stdout. A reader that went away (`reelq jobs | head`) is not an error worth
/// reporting.
pub(crate) fn print_out(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| if text.ends_with('\n') { Ok(()) } else { out.write_all(b"\n") });
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}
