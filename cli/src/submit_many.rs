//! `reelq submit-many`: one job per video, sent as `POST /v1/jobs:batch` requests.

use std::io::{self, BufRead as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;
use uuid::Uuid;

use crate::args::SubmitManyArgs;
use crate::client::ApiClient;
use crate::commands::print_out;
use crate::model::{BatchItem, JobRequest};
use crate::upload;

/// One thing to submit, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A stored video.
    Video(Uuid),
    /// A file to upload first.
    File(PathBuf),
}

impl Item {
    /// An id names a stored video unless a file of that name exists here.
    fn parse(text: &str) -> Self {
        match Uuid::parse_str(text) {
            Ok(id) if !Path::new(text).exists() => Self::Video(id),
            _ => Self::File(PathBuf::from(text)),
        }
    }
}

/// The items from the arguments, then from `--from`.
fn read_items(args: &SubmitManyArgs) -> Result<Vec<Item>> {
    let mut lines: Vec<String> = args.items.clone();
    if let Some(from) = &args.from {
        let reader: Box<dyn io::BufRead> = if from.as_os_str() == "-" {
            Box::new(io::stdin().lock())
        } else {
            Box::new(io::BufReader::new(std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?))
        };
        for line in reader.lines() {
            lines.push(line.with_context(|| format!("cannot read {}", from.display()))?);
        }
    }
    Ok(lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty() && !l.starts_with('#')).map(Item::parse).collect())
}

pub async fn run(client: &ApiClient, args: SubmitManyArgs) -> Result<ExitCode> {
    let json = args.output.json;
    let analyses: Vec<String> = args.analyses.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
    anyhow::ensure!(!analyses.is_empty(), "--analyses names no analysis");
    let items = read_items(&args)?;
    anyhow::ensure!(!items.is_empty(), "no videos named: pass files or video ids, or --from a list");

    // Uploads first, a few at once, keeping the order; one that fails stops the run before
    // anything is submitted.
    let uploads = items.iter().filter(|i| matches!(i, Item::File(_))).count();
    if uploads > 0 && !json {
        eprintln!("uploading {uploads} file(s)");
    }
    let videos: Vec<Uuid> = futures::stream::iter(items.iter().cloned())
        .map(|item| async move {
            match item {
                Item::Video(id) => Ok(id),
                Item::File(path) => {
                    let video = upload::upload(client, &path, false).await?;
                    if !json {
                        eprintln!("uploaded {} as video {}", path.display(), video.id);
                    }
                    Ok::<_, anyhow::Error>(video.id)
                }
            }
        })
        .buffered(args.uploads as usize)
        .try_collect()
        .await?;

    let requests: Vec<BatchItem> = videos
        .iter()
        .map(|&video_id| BatchItem {
            request: JobRequest {
                video_id,
                analyses: analyses.clone(),
                priority: args.priority.as_str(),
                callback_url: args.callback_url.clone(),
                options: serde_json::Map::new(),
            },
            idempotency_key: args.idempotency_prefix.as_ref().map(|p| format!("{p}:{video_id}")),
        })
        .collect();
    let mut answers: Vec<Value> = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(args.batch_size as usize) {
        let answer = client.submit_batch(chunk).await?;
        let items = answer["items"].as_array().context("the API's answer has no items")?;
        anyhow::ensure!(items.len() == chunk.len(), "the API answered {} items of {}", items.len(), chunk.len());
        let offset = answers.len();
        answers.extend(items.iter().cloned().map(|mut i| {
            // Number items across the whole run, not within their request.
            if let Some(n) = i["index"].as_u64() {
                i["index"] = Value::from(n + offset as u64);
            }
            i
        }));
    }

    let refused = answers.iter().filter(|a| a["job"].is_null()).count();
    if json {
        print_out(&crate::render::pretty_json(&Value::Array(answers)))?;
    } else {
        print_out(&table(&items, &answers))?;
        eprintln!("{} submitted, {refused} refused", answers.len() - refused);
    }
    Ok(if refused > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// One line per item: what it was, the HTTP status of its item, and the job or the refusal.
fn table(items: &[Item], answers: &[Value]) -> String {
    let mut out = String::new();
    for (item, a) in items.iter().zip(answers) {
        let name = match item {
            Item::Video(id) => id.to_string(),
            Item::File(p) => p.display().to_string(),
        };
        let status = a["status"].as_u64().unwrap_or(0);
        let what = match a["job"]["id"].as_str() {
            Some(id) if status == 200 => format!("{id} (already submitted)"),
            Some(id) => id.to_owned(),
            None => {
                format!("refused: {} ({})", a["error"]["detail"].as_str().unwrap_or("no reason given"), a["error"]["code"].as_str().unwrap_or("unknown"))
            }
        };
        out.push_str(&format!("{name}\t{status}\t{what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn an_id_is_a_stored_video_unless_such_a_file_exists() {
        let id = "0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e6f";
        assert_eq!(Item::parse(id), Item::Video(id.parse().expect("uuid")));
        assert_eq!(Item::parse("clip.mp4"), Item::File("clip.mp4".into()));
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join(id);
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(Item::parse(file.to_str().expect("utf-8")), Item::File(file.clone()));
    }

    #[tokio::test]
    async fn items_go_in_requests_of_batch_size_and_a_refusal_exits_2() {
        use crate::fake_api::fake_api;
        let ids = ["0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e61", "0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e62", "0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e63"];
        let accepted = |i: usize| serde_json::json!({ "index": i, "status": 202, "job": { "id": format!("job-{i}") } });
        let first = serde_json::json!({ "accepted": 2, "replayed": 0, "refused": 0, "items": [accepted(0), accepted(1)] });
        let refused = serde_json::json!({ "index": 0, "status": 404, "error": { "code": "not_found", "detail": "video not found" } });
        let second = serde_json::json!({ "accepted": 0, "replayed": 0, "refused": 1, "items": [refused] });
        let (url, hits) = fake_api(vec![(200, first.to_string()), (200, second.to_string())]).await;
        let client = ApiClient::new(&url, "k").expect("client");
        let cli = crate::args::Cli::try_parse_from(["reelq", "submit-many", ids[0], ids[1], ids[2], "--batch-size", "2", "--json"]).expect("parses");
        let crate::args::Command::SubmitMany(args) = cli.command else { panic!("not submit-many") };
        let code = run(&client, args).await.expect("ran");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2, "three items in requests of two");
        assert_eq!(code, ExitCode::from(2));
    }

    #[test]
    fn refusals_read_as_such() {
        let items = [Item::Video(Uuid::nil()), Item::File("a.mp4".into())];
        let answers = [
            serde_json::json!({ "index": 0, "status": 404, "error": { "code": "not_found", "detail": "video not found" } }),
            serde_json::json!({ "index": 1, "status": 202, "job": { "id": "j1" } }),
        ];
        let t = table(&items, &answers);
        assert!(t.contains("refused: video not found (not_found)"), "{t}");
        assert!(t.contains("a.mp4\t202\tj1"), "{t}");
    }
}
