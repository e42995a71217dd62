//! The CronJob controller (upstream's `pkg/controller/cronjob`, the v2 controller): creates a
//! Job from `spec.jobTemplate` at each time of `spec.schedule` (standard 5-field cron, read
//! in `spec.timeZone`, UTC without it), named `<cronjob>-<scheduled minutes since the epoch>`
//! so a time is never run twice; applies `concurrencyPolicy`, `startingDeadlineSeconds` and
//! `suspend`; keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`; and deletes
//! finished Jobs beyond the history limits.
//!
//! The schedule parser and the next-time computation are ours (the semantics of
//! robfig/cron v3's standard parser, which upstream uses); time zones are read from the
//! system's zoneinfo files. The clock is [`Config::now`], so tests drive time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::civil::date;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};

use super::events::Events;
use super::informer::{
    Change, Informer, Requeue, WorkQueue, controller_of, key_of, run_workers, split_key,
};

/// The annotation with a Job's scheduled time (RFC 3339, in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream's `nextScheduleDelta`: a sync is requeued this long after the next time.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// Concurrent syncs (upstream's `--concurrent-cron-job-syncs`).
const WORKERS: usize = 5;

/// The controller's clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The CronJob controller's settings.
#[derive(Clone)]
pub struct Config {
    /// What "now" is; the system clock outside tests.
    pub now: Clock,
    /// The IANA time zone database (`/usr/share/zoneinfo`).
    pub zoneinfo: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            now: Arc::new(Timestamp::now),
            zoneinfo: PathBuf::from("/usr/share/zoneinfo"),
        }
    }
}

// ---- schedules ----

/// robfig/cron's `starBit`: the field was `*` (or `?`), which matters for day matching.
const STAR: u64 = 1 << 63;

/// A parsed schedule (robfig/cron's `SpecSchedule` and `ConstantDelaySchedule`).
#[derive(Clone, Debug)]
pub enum Schedule {
    Spec {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        tz: TimeZone,
    },
    /// `@every <duration>`, whole seconds.
    Every(i64),
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn number(s: &str, names: &[&str], first: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + first);
    }
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {s}")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("failed to parse int from {s}")),
        Err(_) => Err(format!("failed to parse int from {s}")),
    }
}

/// robfig/cron's `getRange`: `*`, `a`, `a-b`, each with an optional `/step` (`a/step` runs to
/// the maximum).
fn range(expr: &str, min: u32, max: u32, names: &[&str], first: u32) -> Result<u64, String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) if !s.contains('/') => (r, Some(s)),
        Some(_) => return Err(format!("too many slashes: {expr}")),
        None => (expr, None),
    };
    let mut extra = 0;
    let single = !range.contains('-');
    let (start, mut end) = if range == "*" || range == "?" {
        extra = STAR;
        (min, max)
    } else {
        match range.split('-').collect::<Vec<_>>()[..] {
            [a] => {
                let a = number(a, names, first)?;
                (a, a)
            }
            [a, b] => (number(a, names, first)?, number(b, names, first)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let s = number(s, &[], 0)?;
            if single {
                end = max;
            }
            if s > 1 {
                extra = 0;
            }
            s
        }
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let bits = (start..=end)
        .step_by(step as usize)
        .fold(0u64, |b, i| b | 1 << i);
    Ok(bits | extra)
}

fn field(f: &str, min: u32, max: u32, names: &[&str], first: u32) -> Result<u64, String> {
    f.split(',')
        .filter(|r| !r.is_empty())
        .try_fold(0, |bits, r| Ok(bits | range(r, min, max, names, first)?))
}

/// Go's `time.ParseDuration`, in whole seconds (robfig rounds `@every` down to seconds, at
/// least one).
fn go_duration_seconds(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let mut rest = s;
    let mut nanos: f64 = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += value * unit;
        rest = &rest[u..];
    }
    Ok(((nanos / 1e9) as i64).max(1))
}

/// robfig/cron's standard parser (`cron.ParseStandard`): five fields, or a descriptor
/// (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`,
/// `@every <duration>`), optionally after `TZ=<zone>` / `CRON_TZ=<zone>`. `tz` is the zone
/// without a prefix; `load` finds a prefix's zone.
pub fn parse(
    spec: &str,
    tz: TimeZone,
    load: impl Fn(&str) -> Result<TimeZone, String>,
) -> Result<Schedule, String> {
    let mut spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut tz = tz;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let space = spec.find(' ').unwrap_or(spec.len());
        let zone = &spec[eq + 1..space];
        tz = load(zone).map_err(|e| format!("provided bad location {zone}: {e}"))?;
        spec = spec[space..].trim();
    }
    let expanded = match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        s if s.starts_with("@every ") => {
            let d = &s["@every ".len()..];
            let secs =
                go_duration_seconds(d).map_err(|e| format!("failed to parse duration {s}: {e}"))?;
            return Ok(Schedule::Every(secs));
        }
        s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
        s => s,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Schedule::Spec {
        minute: field(fields[0], 0, 59, &[], 0)?,
        hour: field(fields[1], 0, 23, &[], 0)?,
        dom: field(fields[2], 1, 31, &[], 0)?,
        month: field(fields[3], 1, 12, &MONTHS, 1)?,
        dow: field(fields[4], 0, 6, &DAYS, 0)?,
        tz,
    })
}

fn bit(set: u64, i: i8) -> bool {
    set & (1 << i) != 0
}

/// robfig/cron's `dayMatches`: day of month and day of week must both match when either is
/// `*`, otherwise either may.
fn day_matches(dom: u64, dow: u64, t: &Zoned) -> bool {
    let d = bit(dom, t.day());
    let w = bit(dow, t.weekday().to_sunday_zero_offset());
    if dom & STAR != 0 || dow & STAR != 0 {
        d && w
    } else {
        d || w
    }
}

fn zoned(y: i16, m: i8, d: i8, h: i8, tz: &TimeZone) -> Option<Zoned> {
    date(y, m, d).at(h, 0, 0, 0).to_zoned(tz.clone()).ok()
}

/// The first time strictly after `after` (whole seconds) the schedule fires, or `None` when
/// none comes within five years (robfig/cron's `SpecSchedule.Next`, its DST handling
/// included: a day search that lands off midnight is moved back to it).
pub fn next(schedule: &Schedule, after: Timestamp) -> Option<Timestamp> {
    let (minute, hour, dom, month, dow, tz) = match schedule {
        Schedule::Every(secs) => {
            return Timestamp::from_second(after.as_second().checked_add(*secs)?).ok();
        }
        Schedule::Spec {
            minute,
            hour,
            dom,
            month,
            dow,
            tz,
        } => (*minute, *hour, *dom, *month, *dow, tz),
    };
    let start = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?;
    let mut t = start.to_zoned(tz.clone());
    let mut added = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !bit(month, t.month()) {
            if !added {
                added = true;
                t = zoned(t.year(), t.month(), 1, 0, tz)?;
            }
            t = t.checked_add(1.month()).ok()?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(dom, dow, &t) {
            if !added {
                added = true;
                t = zoned(t.year(), t.month(), t.day(), 0, tz)?;
            }
            t = t.checked_add(1.day()).ok()?;
            // Across a DST change midnight may land an hour off.
            let h = i64::from(t.hour());
            if h != 0 {
                let shift = if h > 12 { 24 - h } else { -h };
                t = t.checked_add(SignedDuration::from_hours(shift)).ok()?;
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !bit(hour, t.hour()) {
            if !added {
                added = true;
                t = zoned(t.year(), t.month(), t.day(), t.hour(), tz)?;
            }
            t = t.checked_add(SignedDuration::from_hours(1)).ok()?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !bit(minute, t.minute()) {
            if !added {
                added = true;
                let s = t.timestamp().as_second();
                t = Timestamp::from_second(s - s.rem_euclid(60))
                    .ok()?
                    .to_zoned(tz.clone());
            }
            t = t.checked_add(SignedDuration::from_mins(1)).ok()?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        if t.second() != 0 {
            // Only second 0 matches: on to the next minute, and check everything again.
            added = true;
            let s = t.timestamp().as_second();
            t = Timestamp::from_second(s - s.rem_euclid(60) + 60)
                .ok()?
                .to_zoned(tz.clone());
            continue 'wrap;
        }
        return Some(t.timestamp());
    }
}

/// How many start times were missed, as upstream's `missedSchedulesType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100: upstream's `TooManyMissedTimes` warning.
    Many(i64),
}

/// Upstream's `mostRecentScheduleTime`: from the last schedule time (else the creation time,
/// or `now - startingDeadlineSeconds` if later), the most recent time at or before `now` the
/// schedule fired, if any, and how many were missed. Returns the earliest time looked from.
pub fn most_recent_schedule_time(
    created: Timestamp,
    last: Option<Timestamp>,
    starting_deadline: Option<i64>,
    now: Timestamp,
    schedule: &Schedule,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = last.unwrap_or(created);
    if let Some(d) = starting_deadline {
        let deadline = now - SignedDuration::from_secs(d);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let too_close = || "time difference between two schedules is less than 1 second".to_string();
    let t1 = next(schedule, earliest).ok_or_else(too_close)?;
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let t2 = next(schedule, t1).ok_or_else(too_close)?;
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.as_second() - t1.as_second();
    if between < 1 {
        return Err(too_close());
    }
    let elapsed = now.as_second() - t1.as_second();
    let missed = elapsed / between + 1;
    // Start a little before the estimated last time and walk forward, as upstream does for
    // irregular schedules such as `30 6-16/4 * * 1-5`.
    let from = Timestamp::from_second(t1.as_second() + (missed - 2) * between)
        .map_err(|e| e.to_string())?;
    let mut most_recent = None;
    let mut t = next(schedule, from);
    while let Some(x) = t.filter(|x| *x <= now) {
        most_recent = Some(x);
        t = next(schedule, x);
    }
    let kind = if missed > 100 {
        Missed::Many(missed)
    } else {
        Missed::Few
    };
    Ok((earliest, most_recent, kind))
}

/// Upstream's `nextScheduleTimeDuration`: how long until a sync should look again (the
/// next time, plus 100 ms).
pub fn next_schedule_delay(
    created: Timestamp,
    last: Option<Timestamp>,
    now: Timestamp,
    schedule: &Schedule,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(created, last, None, now, schedule) {
        Err(_) => now,
        Ok((earliest, recent, _)) => recent.unwrap_or(earliest),
    };
    let next = next(schedule, from)?;
    let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}

/// Upstream's `getJobName`: `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Go's `time.RFC3339` in `tz`: `Z` for a zero offset.
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Upstream's `getJobFromTemplate2`: the Job for one scheduled time.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let tm = spec.job_template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: spec.job_template.spec,
        status: None,
    }
}

/// The finished condition of a Job (upstream's `getFinishedStatus`).
fn finished(job: &Job) -> Option<&'static str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find_map(|c| {
            if c.status != "True" {
                return None;
            }
            match c.type_.as_str() {
                "Complete" => Some("Complete"),
                "Failed" => Some("Failed"),
                _ => None,
            }
        })
}

fn reference_to(job: &Job) -> ObjectReference {
    kube::Resource::object_ref(job, &())
}

/// An event to record on the CronJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

fn normal(reason: &'static str, message: String) -> CronEvent {
    CronEvent {
        warning: false,
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> CronEvent {
    CronEvent {
        warning: true,
        reason,
        message,
    }
}

/// The first part of upstream's `syncCronJob`: the active list against the child Jobs.
/// Returns the status, the events, and the active Jobs no child was found for (the caller
/// reads them from the API before dropping them, as upstream).
pub fn reconcile_active(
    status: &CronJobStatus,
    jobs: &[Arc<Job>],
) -> (CronJobStatus, Vec<CronEvent>, Vec<ObjectReference>) {
    let mut status = status.clone();
    let mut events = Vec::new();
    let uid = |j: &Job| j.metadata.uid.clone().unwrap_or_default();
    for j in jobs {
        let active = status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid.as_deref() == Some(&uid(j)));
        let done = finished(j);
        if !active && done.is_none() {
            events.push(warning(
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                ),
            ));
        } else if let (true, Some(condition)) = (active, done) {
            if let Some(list) = status.active.as_mut() {
                list.retain(|r| r.uid.as_deref() != Some(&uid(j)));
            }
            events.push(normal(
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, condition: {condition}",
                    j.name_any()
                ),
            ));
        }
        if done == Some("Complete")
            && let Some(t) = j.status.as_ref().and_then(|s| s.completion_time.clone())
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|l| t.0 > l.0)
        {
            status.last_successful_time = Some(t);
        }
    }
    let missing: Vec<ObjectReference> = status
        .active
        .iter()
        .flatten()
        .filter(|r| !jobs.iter().any(|j| j.metadata.uid == r.uid))
        .cloned()
        .collect();
    if status.active.as_ref().is_some_and(|a| a.is_empty()) {
        status.active = None;
    }
    (status, events, missing)
}

/// What the schedule asks for now (the second part of upstream's `syncCronJob`).
#[derive(Debug, PartialEq)]
pub enum Start {
    /// Nothing is due.
    Nothing,
    /// A time was missed by more than `startingDeadlineSeconds`.
    Missed(Timestamp),
    /// A time is due but a Job still runs and the policy is Forbid.
    Forbidden,
    /// Run the Job of this time (deleting the active ones first with Replace).
    Run { scheduled: Timestamp, replace: bool },
}

/// Upstream's scheduling decision for a CronJob that is neither deleted nor suspended:
/// what to start, the events, and when to look again.
pub fn decide(
    cj: &CronJob,
    status: &CronJobStatus,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<(Start, Vec<CronEvent>, Option<Duration>), String> {
    let spec = cj.spec.clone().unwrap_or_default();
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let last = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut events = Vec::new();
    let (_, recent, missed) =
        most_recent_schedule_time(created, last, spec.starting_deadline_seconds, now, schedule)?;
    let delay = next_schedule_delay(created, last, now, schedule);
    let Some(scheduled) = recent.filter(|t| *t <= now) else {
        return Ok((Start::Nothing, events, delay));
    };
    if let Missed::Many(n) = missed {
        events.push(warning(
            "TooManyMissedTimes",
            format!("too many missed start times: {n}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        ));
    }
    if let Some(d) = spec.starting_deadline_seconds
        && scheduled + SignedDuration::from_secs(d) < now
    {
        events.push(warning(
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
            ),
        ));
        return Ok((Start::Missed(scheduled), events, delay));
    }
    let name = job_name(&cj.name_any(), scheduled);
    let active = status.active.as_deref().unwrap_or_default();
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || last == Some(scheduled)
    {
        return Ok((Start::Nothing, events, delay));
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        events.push(normal(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        ));
        return Ok((Start::Forbidden, events, delay));
    }
    let replace = policy == "Replace" && !active.is_empty();
    Ok((Start::Run { scheduled, replace }, events, delay))
}

/// Upstream's `cleanupFinishedJobs`: the oldest finished Jobs (by start time, unstarted ones
/// last) beyond `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`.
pub fn jobs_to_clean(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<Arc<Job>> {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (condition, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut these: Vec<Arc<Job>> = jobs
            .iter()
            .filter(|j| finished(j) == Some(condition))
            .cloned()
            .collect();
        let start = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
        };
        these.sort_by(|a, b| match (start(a), start(b)) {
            (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.name_any().cmp(&b.name_any())),
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, None) => a.name_any().cmp(&b.name_any()),
        });
        let extra = these.len().saturating_sub(limit.max(0) as usize);
        out.extend(these.into_iter().take(extra));
    }
    out
}

/// Reads an IANA time zone from the zoneinfo directory (Go's `time.LoadLocation`): the name
/// must be a relative path of plain components; `UTC` and the empty name are UTC.
pub fn load_time_zone(dir: &Path, name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    let well_formed = !name.starts_with('/')
        && !name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
    if !well_formed {
        return Err(format!("unknown time zone {name}"));
    }
    let data = std::fs::read(dir.join(name)).map_err(|_| format!("unknown time zone {name}"))?;
    TimeZone::tzif(name, &data).map_err(|e| format!("unknown time zone {name}: {e}"))
}

// ---- the controller ----

/// The running CronJob controller.
pub struct Controller {
    client: Client,
    config: Config,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    queue: Arc<WorkQueue>,
    events: Events,
}

fn ignore_gone<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

impl Controller {
    /// Wires the handlers; run the informers and then [`Controller::run`].
    pub fn new(
        client: Client,
        config: Config,
        cronjobs: Arc<Informer<CronJob>>,
        jobs: Arc<Informer<Job>>,
    ) -> Arc<Self> {
        let events = Events::start(client.clone(), "cronjob-controller");
        let this = Arc::new(Controller {
            client,
            config,
            cronjobs,
            jobs,
            queue: WorkQueue::new(),
            events,
        });
        let weak = Arc::downgrade(&this);
        this.cronjobs.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                match change {
                    Change::Applied { new, .. } => c.queue.add(key_of(new.as_ref())),
                    Change::Deleted(old) => c.queue.add(key_of(old.as_ref())),
                }
            }
        });
        let weak = Arc::downgrade(&this);
        this.jobs.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let job = match change {
                Change::Applied { new, .. } => new,
                Change::Deleted(old) => old,
            };
            if let Some(owner) = controller_of(job.as_ref())
                && owner.kind == "CronJob"
            {
                c.queue.add(format!(
                    "{}/{}",
                    job.namespace().unwrap_or_default(),
                    owner.name
                ));
            }
        });
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.cronjobs.wait_synced().await;
        self.jobs.wait_synced().await;
        let this = self.clone();
        let workers = run_workers(
            "cronjob-controller",
            self.queue.clone(),
            WORKERS,
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            },
        );
        let resync = super::informer::resync(self.cronjobs.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    fn record(&self, cj: &CronJob, events: Vec<CronEvent>) {
        let reference = ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("CronJob".into()),
            name: cj.metadata.name.clone(),
            namespace: cj.metadata.namespace.clone(),
            uid: cj.metadata.uid.clone(),
            resource_version: cj.metadata.resource_version.clone(),
            ..Default::default()
        };
        for e in events {
            if e.warning {
                self.events.warning(reference.clone(), e.reason, e.message);
            } else {
                self.events.normal(reference.clone(), e.reason, e.message);
            }
        }
    }

    /// Deletes a Job with background propagation (upstream's `deleteJob`); false when it
    /// failed (a FailedDelete event says why).
    async fn delete_job(&self, cj: &CronJob, ns: &str, name: &str) -> bool {
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match ignore_gone(api.delete(name, &params).await) {
            Ok(_) => {
                self.record(
                    cj,
                    vec![normal("SuccessfulDelete", format!("Deleted job {name}"))],
                );
                true
            }
            Err(e) => {
                self.record(
                    cj,
                    vec![warning("FailedDelete", format!("Deleted job: {e}"))],
                );
                false
            }
        }
    }

    /// Upstream's `sync` + `syncCronJob` + `cleanupFinishedJobs`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let (ns, _) = split_key(key);
        let Some(cj) = self.cronjobs.get(key) else {
            return Ok(None);
        };
        let now = (self.config.now)();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs = self.jobs.controlled_by(&uid);
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let old_status = cj.status.clone().unwrap_or_default();
        let (mut status, events, missing) = reconcile_active(&old_status, &jobs);
        self.record(&cj, events);
        for r in missing {
            // The cache may be behind: only a Job the API does not have is missing.
            let name = r.name.clone().unwrap_or_default();
            if ignore_gone(jobs_api.get(&name).await)?.is_none() {
                self.record(
                    &cj,
                    vec![normal(
                        "MissingJob",
                        format!("Active job went missing: {name}"),
                    )],
                );
                if let Some(a) = status.active.as_mut() {
                    a.retain(|x| x.uid != r.uid);
                }
            }
        }
        let requeue = if cj.metadata.deletion_timestamp.is_some() {
            None
        } else {
            self.schedule(&cj, &mut status, now).await?
        };
        for j in jobs_to_clean(&cj, &jobs) {
            if self.delete_job(&cj, ns, &j.name_any()).await
                && let Some(a) = status.active.as_mut()
            {
                a.retain(|x| x.uid != j.metadata.uid);
            }
        }
        if status.active.as_ref().is_some_and(|a| a.is_empty()) {
            status.active = None;
        }
        if status != old_status {
            let mut updated = (*cj).clone();
            updated.status = Some(status);
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            api.replace_status(&cj.name_any(), &PostParams::default(), &updated)
                .await?;
        }
        Ok(requeue)
    }

    /// Creates the Job that is due, if any; returns when to look again.
    async fn schedule(
        &self,
        cj: &CronJob,
        status: &mut CronJobStatus,
        now: Timestamp,
    ) -> Result<Requeue, kube::Error> {
        let (ns, name) = (cj.namespace().unwrap_or_default(), cj.name_any());
        let spec = cj.spec.clone().unwrap_or_default();
        let zone = spec.time_zone.clone();
        let tz = match load_time_zone(&self.config.zoneinfo, zone.as_deref().unwrap_or("")) {
            Ok(tz) => tz,
            Err(e) => {
                let zone = zone.unwrap_or_default();
                self.record(
                    cj,
                    vec![warning(
                        "UnknownTimeZone",
                        format!("invalid timeZone: {zone:?}: {e}"),
                    )],
                );
                return Ok(None);
            }
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        if spec.schedule.contains("TZ") {
            self.record(cj, vec![warning(
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            )]);
        }
        let dir = self.config.zoneinfo.clone();
        let schedule = match parse(&spec.schedule, tz.clone(), |z| load_time_zone(&dir, z)) {
            Ok(s) => s,
            Err(e) => {
                self.record(
                    cj,
                    vec![warning(
                        "UnparseableSchedule",
                        format!("unparseable schedule: {:?} : {e}", spec.schedule),
                    )],
                );
                return Ok(None);
            }
        };
        let (start, events, requeue) = match decide(cj, status, &schedule, now) {
            Ok(d) => d,
            Err(e) => {
                self.record(
                    cj,
                    vec![warning(
                        "InvalidSchedule",
                        format!("invalid schedule: {} : {e}", spec.schedule),
                    )],
                );
                return Ok(None);
            }
        };
        self.record(cj, events);
        let Start::Run { scheduled, replace } = start else {
            return Ok(requeue);
        };
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        if replace {
            for r in status.active.clone().unwrap_or_default() {
                let job_name = r.name.clone().unwrap_or_default();
                if ignore_gone(jobs_api.get(&job_name).await)?.is_none() {
                    continue;
                }
                if !self.delete_job(cj, &ns, &job_name).await {
                    return Err(kube::Error::Service(
                        format!("could not replace job {ns}/{job_name}").into(),
                    ));
                }
                if let Some(a) = status.active.as_mut() {
                    a.retain(|x| x.uid != r.uid);
                }
            }
        }
        let job = job_from_template(cj, scheduled, &tz);
        let created = match jobs_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.record(
                    cj,
                    vec![normal(
                        "SuccessfulCreate",
                        format!("Created job {}", j.name_any()),
                    )],
                );
                j
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Made before (a status write was lost): adopt it into the active list if it
                // is ours, as upstream.
                let existing = jobs_api.get(&job.name_any()).await?;
                let ours = controller_of(&existing)
                    .is_some_and(|o| Some(&o.uid) == cj.metadata.uid.as_ref());
                let listed = status
                    .active
                    .iter()
                    .flatten()
                    .any(|r| r.uid == existing.metadata.uid);
                if !ours || listed {
                    return Ok(requeue);
                }
                existing
            }
            Err(e) => {
                self.record(
                    cj,
                    vec![warning("FailedCreate", format!("Error creating job: {e}"))],
                );
                return Err(e);
            }
        };
        tracing::debug!(cronjob = %name, job = %created.name_any(), "created job");
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(reference_to(&created));
        status.last_schedule_time = Some(Time(scheduled));
        Ok(requeue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(spec: &str) -> Schedule {
        parse(spec, TimeZone::UTC, |z| {
            load_time_zone(Path::new("/usr/share/zoneinfo"), z)
        })
        .unwrap()
    }

    fn next_s(spec: &str, after: &str) -> String {
        next(&utc(spec), ts(after)).unwrap().to_string()
    }

    fn have_zoneinfo() -> bool {
        let ok = Path::new("/usr/share/zoneinfo/Europe/Berlin").exists();
        if !ok {
            println!("SKIP: /usr/share/zoneinfo is not installed (apt-get install tzdata)");
        }
        ok
    }

    #[test]
    fn next_times_of_standard_schedules() {
        assert_eq!(
            next_s("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next_s("* * * * *", "2024-01-01T10:01:00Z"),
            "2024-01-01T10:02:00Z"
        );
        assert_eq!(
            next_s("*/15 * * * *", "2024-01-01T10:16:00Z"),
            "2024-01-01T10:30:00Z"
        );
        assert_eq!(
            next_s("5-10/2 3 * * *", "2024-01-01T03:07:00Z"),
            "2024-01-01T03:09:00Z"
        );
        assert_eq!(
            next_s("0 9 * * mon-fri", "2024-01-05T09:00:00Z"),
            "2024-01-08T09:00:00Z"
        );
        assert_eq!(
            next_s("0 0 1,15 * *", "2024-01-02T00:00:00Z"),
            "2024-01-15T00:00:00Z"
        );
        assert_eq!(
            next_s("0 0 29 feb *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next_s("30 4 1 JAN,jul *", "2024-02-01T00:00:00Z"),
            "2024-07-01T04:30:00Z"
        );
        // Day of month and day of week both restricted: either matches (2024-01-02 is a Tuesday).
        assert_eq!(
            next_s("0 0 13 * 2", "2024-01-01T00:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next_s("@hourly", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:00:00Z"
        );
        assert_eq!(
            next_s("@daily", "2024-01-01T10:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next_s("@weekly", "2024-01-01T10:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next_s("@monthly", "2024-01-31T10:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next_s("@yearly", "2024-01-31T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next_s("@annually", "2024-01-31T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next_s("@every 1h30m", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:30:00Z"
        );
        // February 31st never comes.
        assert!(next(&utc("0 0 31 2 *"), ts("2024-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn bad_schedules_are_refused_with_robfig_messages() {
        let err = |s: &str| parse(s, TimeZone::UTC, |_| Err("no".into())).unwrap_err();
        assert_eq!(
            err("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(
            err("TZ=Nowhere * * * * *"),
            "provided bad location Nowhere: no"
        );
    }

    #[test]
    fn schedules_follow_the_time_zone() {
        if !have_zoneinfo() {
            return;
        }
        let dir = Path::new("/usr/share/zoneinfo");
        let berlin = load_time_zone(dir, "Europe/Berlin").unwrap();
        let s = parse("0 9 * * *", berlin.clone(), |_| Err("unused".into())).unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            next(&s, ts("2024-01-10T12:00:00Z")).unwrap().to_string(),
            "2024-01-11T08:00:00Z"
        );
        assert_eq!(
            next(&s, ts("2024-07-10T12:00:00Z")).unwrap().to_string(),
            "2024-07-11T07:00:00Z"
        );
        // Across the spring change (31 March 2024) the daily time stays 09:00 local.
        assert_eq!(
            next(&s, ts("2024-03-30T12:00:00Z")).unwrap().to_string(),
            "2024-03-31T07:00:00Z"
        );
        let tokyo = parse("TZ=Asia/Tokyo 0 0 * * *", TimeZone::UTC, |z| {
            load_time_zone(dir, z)
        })
        .unwrap();
        assert_eq!(
            next(&tokyo, ts("2024-01-01T00:00:00Z"))
                .unwrap()
                .to_string(),
            "2024-01-01T15:00:00Z"
        );
        assert!(load_time_zone(dir, "Mars/Olympus").is_err());
        assert!(load_time_zone(dir, "../etc/passwd").is_err());
        let cj = cronjob("0 9 * * *");
        let job = job_from_template(&cj, ts("2024-01-11T08:00:00Z"), &berlin);
        assert_eq!(
            job.annotations()[SCHEDULED_TIMESTAMP],
            "2024-01-11T09:00:00+01:00"
        );
    }

    fn cronjob(schedule: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(ts("2024-01-01T10:00:00Z"))),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                concurrency_policy: Some("Allow".into()),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(1),
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn the_most_recent_missed_time_is_run_and_the_next_one_awaited() {
        let s = utc("*/5 * * * *");
        let cj = cronjob("*/5 * * * *");
        let st = CronJobStatus::default();
        // Before the first time: nothing, look again just after 10:05.
        let (start, _, delay) = decide(&cj, &st, &s, ts("2024-01-01T10:03:00Z")).unwrap();
        assert_eq!(start, Start::Nothing);
        assert_eq!(delay, Some(Duration::from_secs(120) + NEXT_SCHEDULE_DELTA));
        // Three times passed: only the latest one runs.
        let (start, _, _) = decide(&cj, &st, &s, ts("2024-01-01T10:17:00Z")).unwrap();
        let scheduled = ts("2024-01-01T10:15:00Z");
        assert_eq!(
            start,
            Start::Run {
                scheduled,
                replace: false
            }
        );
        assert_eq!(job_name("hello", scheduled), "hello-28401735");
        let job = job_from_template(&cj, scheduled, &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-28401735"));
        assert_eq!(
            job.annotations()[SCHEDULED_TIMESTAMP],
            "2024-01-01T10:15:00Z"
        );
        assert_eq!(job.owner_references()[0].kind, "CronJob");
        // Once it is the last schedule time, nothing more until 10:20.
        let st = CronJobStatus {
            last_schedule_time: Some(Time(scheduled)),
            ..CronJobStatus::default()
        };
        let (start, _, delay) = decide(&cj, &st, &s, ts("2024-01-01T10:17:00Z")).unwrap();
        assert_eq!(start, Start::Nothing);
        assert_eq!(delay, Some(Duration::from_secs(180) + NEXT_SCHEDULE_DELTA));
    }

    #[test]
    fn starting_deadline_and_concurrency_policies() {
        let s = utc("*/5 * * * *");
        let mut cj = cronjob("*/5 * * * *");
        cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(60);
        let st = CronJobStatus::default();
        // 10:05 was missed by more than 60 s at 10:07.
        let (start, events, _) = decide(&cj, &st, &s, ts("2024-01-01T10:07:00Z")).unwrap();
        assert_eq!(start, Start::Nothing, "no time within the deadline");
        assert!(events.is_empty());
        let (start, _, _) = decide(&cj, &st, &s, ts("2024-01-01T10:05:30Z")).unwrap();
        assert_eq!(
            start,
            Start::Run {
                scheduled: ts("2024-01-01T10:05:00Z"),
                replace: false
            }
        );

        let running = ObjectReference {
            name: Some("hello-1".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let st = CronJobStatus {
            active: Some(vec![running]),
            ..CronJobStatus::default()
        };
        let mut forbid = cronjob("*/5 * * * *");
        forbid.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
        let (start, events, _) = decide(&forbid, &st, &s, ts("2024-01-01T10:05:30Z")).unwrap();
        assert_eq!(start, Start::Forbidden);
        assert_eq!(events[0].reason, "JobAlreadyActive");
        let mut replace = cronjob("*/5 * * * *");
        replace.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
        let (start, _, _) = decide(&replace, &st, &s, ts("2024-01-01T10:05:30Z")).unwrap();
        assert_eq!(
            start,
            Start::Run {
                scheduled: ts("2024-01-01T10:05:00Z"),
                replace: true
            }
        );
    }

    #[test]
    fn too_many_missed_times_warn_and_still_run_the_latest() {
        let s = utc("* * * * *");
        let cj = cronjob("* * * * *");
        let (start, events, _) = decide(
            &cj,
            &CronJobStatus::default(),
            &s,
            ts("2024-01-02T10:00:30Z"),
        )
        .unwrap();
        assert_eq!(
            start,
            Start::Run {
                scheduled: ts("2024-01-02T10:00:00Z"),
                replace: false
            }
        );
        assert_eq!(events[0].reason, "TooManyMissedTimes");
        assert!(
            events[0]
                .message
                .starts_with("too many missed start times: 1440.")
        );
    }

    #[test]
    fn a_time_older_than_the_starting_deadline_is_skipped() {
        let s = utc("0 * * * *");
        let mut cj = cronjob("0 * * * *");
        cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(10);
        // The deadline window starts at now - 10 s, after the time itself: nothing to run.
        let (start, _, _) = decide(
            &cj,
            &CronJobStatus::default(),
            &s,
            ts("2024-01-01T11:00:20Z"),
        )
        .unwrap();
        assert_eq!(start, Start::Nothing);
        let (start, _, _) = decide(
            &cj,
            &CronJobStatus::default(),
            &s,
            ts("2024-01-01T11:00:05Z"),
        )
        .unwrap();
        assert_eq!(
            start,
            Start::Run {
                scheduled: ts("2024-01-01T11:00:00Z"),
                replace: false
            }
        );
    }

    fn child(name: &str, uid: &str, condition: Option<&str>, start: i64) -> Arc<Job> {
        Arc::new(Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(Timestamp::from_second(start).unwrap())),
                completion_time: (condition == Some("Complete"))
                    .then(|| Time(Timestamp::from_second(start + 10).unwrap())),
                conditions: condition.map(|c| {
                    vec![JobCondition {
                        type_: c.into(),
                        status: "True".into(),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
        })
    }

    #[test]
    fn finished_jobs_leave_the_active_list_and_old_ones_are_cleaned() {
        let a = child("hello-1", "u1", Some("Complete"), 100);
        let b = child("hello-2", "u2", None, 200);
        let stray = child("other", "u3", None, 300);
        let st = CronJobStatus {
            active: Some(vec![reference_to(&a), reference_to(&b)]),
            ..CronJobStatus::default()
        };
        let (status, events, missing) = reconcile_active(&st, &[a.clone(), b.clone(), stray]);
        assert_eq!(status.active.unwrap(), vec![reference_to(&b)]);
        assert_eq!(
            status.last_successful_time,
            Some(Time(Timestamp::from_second(110).unwrap()))
        );
        let reasons: Vec<&str> = events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["SawCompletedJob", "UnexpectedJob"]);
        assert_eq!(
            events[0].message,
            "Saw completed job: hello-1, condition: Complete"
        );
        assert!(missing.is_empty());

        let cj = cronjob("* * * * *");
        let jobs: Vec<Arc<Job>> = (0..5)
            .map(|i| child(&format!("ok-{i}"), &format!("s{i}"), Some("Complete"), i))
            .chain((0..2).map(|i| child(&format!("bad-{i}"), &format!("f{i}"), Some("Failed"), i)))
            .collect();
        let names: Vec<String> = jobs_to_clean(&cj, &jobs)
            .iter()
            .map(|j| j.name_any())
            .collect();
        assert_eq!(names, ["ok-0", "ok-1", "bad-0"]);
    }
}
