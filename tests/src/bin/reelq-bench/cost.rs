//! What a run costs each part: CPU time of PostgreSQL's processes, of the broker and of the api
//! and the worker (this process, and the api and worker processes it started), transactions PostgreSQL committed, and the
//! database round trips reelq made, by query name. Read before and after a run; the difference
//! divided by the jobs is the cost per job.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;

/// Linux's clock tick for `/proc/*/stat` times.
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of every counter.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    postgres_ticks: u64,
    broker_ticks: u64,
    own_ticks: u64,
    commits: i64,
    rollbacks: i64,
    /// Round trips by query name and the seconds they took, from the process's
    /// `reelq_db_query_duration_seconds`.
    round_trips: BTreeMap<String, (u64, f64)>,
    /// `pg_stat_statements` calls in this database, when the extension is loaded.
    statements: Option<i64>,
}

/// CPU ticks (user + system) of every live process whose command is `comm`.
fn ticks_of(comm: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, rest) = stat.rsplit_once(')')?;
            (head.split_once('(')?.1 == comm).then(|| process_ticks(rest))
        })
        .sum()
}

/// utime + stime from the part of `/proc/PID/stat` after the command's closing parenthesis.
fn process_ticks(after_comm: &str) -> u64 {
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the command.
    fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn pid_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| s.rsplit_once(')').map(|(_, rest)| process_ticks(rest))).unwrap_or(0)
}

fn own_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| s.rsplit_once(')').map(|(_, rest)| process_ticks(rest))).unwrap_or(0)
}

fn round_trips() -> BTreeMap<String, (u64, f64)> {
    let mut by_query = BTreeMap::new();
    for family in reelq_shared::metrics::get().registry.gather() {
        if family.name() != "reelq_db_query_duration_seconds" {
            continue;
        }
        for m in family.get_metric() {
            let query = m.get_label().iter().find(|l| l.name() == "query").map(|l| l.value().to_owned()).unwrap_or_default();
            let h = m.get_histogram();
            let e: &mut (u64, f64) = by_query.entry(query).or_default();
            e.0 += h.get_sample_count();
            e.1 += h.get_sample_sum();
        }
    }
    by_query
}

/// Reads every counter. PostgreSQL publishes a backend's transaction counts when it goes idle
/// for a while, so the end of a run is read after `settle`.
pub async fn sample(pool: &PgPool, services: &[u32], settle: Duration) -> Sample {
    let postgres_ticks = ticks_of("postgres");
    let broker_ticks = ticks_of("beam.smp");
    let own_ticks = own_ticks() + services.iter().map(|pid| pid_ticks(*pid)).sum::<u64>();
    let round_trips = round_trips();
    tokio::time::sleep(settle).await;
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()").execute(pool).await;
    let (commits, rollbacks): (i64, i64) = sqlx::query_as("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(pool)
        .await
        .unwrap_or((0, 0));
    let statements = sqlx::query_scalar::<_, i64>(
        "SELECT sum(calls)::int8 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .ok();
    Sample { postgres_ticks, broker_ticks, own_ticks, commits, rollbacks, round_trips, statements }
}

/// Prints the cost per job between two samples.
pub fn report(before: &Sample, after: &Sample, jobs: usize, secs: f64) {
    let per_job = |v: f64| v / jobs.max(1) as f64;
    let ms = |ticks: u64| ticks as f64 / TICKS_PER_SEC * 1e3;
    let pg = ms(after.postgres_ticks.saturating_sub(before.postgres_ticks));
    let broker = ms(after.broker_ticks.saturating_sub(before.broker_ticks));
    let own = ms(after.own_ticks.saturating_sub(before.own_ticks));
    let total = pg + broker + own;
    println!("  cost per job (whole machine {:.0} % busy of 1 core):", total / 10.0 / secs);
    println!("    PostgreSQL CPU: {:.3} ms ({:.0} % of the CPU used)", per_job(pg), 100.0 * pg / total.max(1e-9));
    println!("    api + worker CPU: {:.3} ms ({:.0} %)", per_job(own), 100.0 * own / total.max(1e-9));
    println!("    RabbitMQ CPU: {:.3} ms ({:.0} %)", per_job(broker), 100.0 * broker / total.max(1e-9));
    println!(
        "    PostgreSQL transactions: {:.2} committed, {:.2} rolled back",
        per_job((after.commits - before.commits) as f64),
        per_job((after.rollbacks - before.rollbacks) as f64)
    );
    if let (Some(a), Some(b)) = (after.statements, before.statements) {
        println!("    statements (pg_stat_statements): {:.2}", per_job((a - b) as f64));
    }
    let mut trips = trips_between(before, after);
    trips.sort_by_key(|t| std::cmp::Reverse(t.1));
    let all: u64 = trips.iter().map(|t| t.1).sum();
    let listed: Vec<String> = trips.iter().take(8).map(|(q, n, _)| format!("{q} {:.2}", per_job(*n as f64))).collect();
    println!("    database round trips by reelq: {:.2} ({})", per_job(all as f64), listed.join(", "));
    let mean: Vec<String> = trips.iter().take(8).map(|(q, n, secs)| format!("{q} {:.2}", secs / *n as f64 * 1e3)).collect();
    println!("    mean round trip, ms: {}", mean.join(", "));
}

/// The round trips made between two readings, by query: (name, count, seconds).
fn trips_between(before: &Sample, after: &Sample) -> Vec<(String, u64, f64)> {
    after
        .round_trips
        .iter()
        .map(|(q, (n, secs))| {
            let (n0, secs0) = before.round_trips.get(q).copied().unwrap_or_default();
            (q.clone(), n.saturating_sub(n0), secs - secs0)
        })
        .filter(|t| t.1 > 0)
        .collect()
}

/// One line for a stretch of a long run: PostgreSQL's CPU (cores), and each of reelq's busiest
/// queries with its round trips per second and mean time, to see which one grows as it goes on.
pub fn interval_line(before: &Sample, after: &Sample, secs: f64) -> String {
    let pg = after.postgres_ticks.saturating_sub(before.postgres_ticks) as f64 / TICKS_PER_SEC / secs.max(1e-9);
    let mut trips = trips_between(before, after);
    trips.sort_by(|a, b| b.2.total_cmp(&a.2));
    let listed: Vec<String> = trips.iter().take(5).map(|(q, n, s)| format!("{q} {:.0}/s {:.1} ms", *n as f64 / secs, s / *n as f64 * 1e3)).collect();
    format!("PostgreSQL {pg:.2} cores; {}", listed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_after_the_command() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        let line = "42 (post gres) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0";
        let rest = line.rsplit_once(')').expect("a command").1;
        assert_eq!(process_ticks(rest), 300);
    }
}
