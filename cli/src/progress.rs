//! Live progress on stderr: bytes of an upload, state of a job being waited on.
//!
//! Bars draw only when stderr is a terminal and the output is not JSON, so logs and pipes get
//! no control sequences and stdout stays clean for scripts.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::model::Job;

const TICK: Duration = Duration::from_millis(120);

/// Whether progress may be drawn.
pub fn visible(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A byte counter for an upload of `total` bytes.
pub fn upload_bar(total: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("uploading {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A percent bar with a spinner for a job; the message carries its status and stage.
pub fn job_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(100);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {bar:30} {pos:>3}% {msg} [{elapsed}]") {
        bar.set_style(style.progress_chars("=> "));
    }
    // The spinner keeps turning between polls, which can be seconds apart.
    bar.enable_steady_tick(TICK);
    bar
}

/// Shows the latest view of a job on its bar.
pub fn show_job(bar: &ProgressBar, job: &Job) {
    bar.set_position(percent(job.progress));
    bar.set_message(job_message(job));
}

/// `running · probing`, or just the status when there is no stage.
pub fn job_message(job: &Job) -> String {
    match job.stage.as_deref().filter(|s| !s.is_empty()) {
        Some(stage) => format!("{} · {stage}", job.status.as_str()),
        None => job.status.as_str().to_owned(),
    }
}

/// Progress (0.0 to 1.0) as a whole percent, clamped so that odd values cannot overflow the bar.
pub fn percent(progress: f64) -> u64 {
    if progress.is_nan() {
        return 0;
    }
    (progress.clamp(0.0, 1.0) * 100.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobStatus;

    #[test]
    fn percent_rounds_and_clamps() {
        assert_eq!(percent(0.0), 0);
        assert_eq!(percent(0.426), 43);
        assert_eq!(percent(1.0), 100);
        assert_eq!(percent(1.7), 100);
        assert_eq!(percent(-0.2), 0);
        assert_eq!(percent(f64::NAN), 0);
    }

    #[test]
    fn message_names_status_and_stage() {
        let mut job = Job { status: JobStatus::Running, stage: Some("probing".into()), ..Job::default() };
        assert_eq!(job_message(&job), "running · probing");
        job.stage = None;
        assert_eq!(job_message(&job), "running");
    }
}
