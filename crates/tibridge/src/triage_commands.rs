//! The triage commands: `tibridge triage`, `tibridge cases`, `tibridge review`. They print
//! for people or as JSON (`--json`) and pick the exit code; the playbook decides.
//!
//! Wiring (for `main.rs` / `commands.rs`): embed [`TriageCommand`]'s variants in `Command`
//! (or `#[command(flatten)]` it), build a [`Playbook`] from the config's `[triage]` section
//! and the connectors, then call [`run_triage`], [`run_cases`] or [`run_review`]:
//!
//! ```text
//! tibridge triage [--once] [--dry-run]          run the playbook (loop every `interval` until Ctrl-C)
//! tibridge cases [ID] [--limit N]               list cases, or show one with its review items
//! tibridge review list [--all] [--limit N]      pending review items (all with --all)
//! tibridge review approve ID [--by NAME]        block what the item proposes, through the triage sink
//! tibridge review reject ID --reason TEXT [--by NAME]   allowlist the object with the reason
//! ```
//!
//! Nothing here changes an outside system except through the playbook.

use crate::{exit, Failure};
use serde_json::json;
use std::io::Write;
use tibridge_core::timestamp::{iso_seconds, now};
use tibridge_engine::triage::playbook::{AlertOutcome, TriageError};
use tibridge_engine::triage::{Playbook, TriageReport};
use tibridge_store::cases::{ReviewItem, ReviewStatus};
use tibridge_store::Store;

/// The triage commands, to embed in the binary's `Command`.
#[derive(Debug, clap::Subcommand)]
pub enum TriageCommand {
    /// Run the C2 triage playbook: poll detections, enrich, decide, block, hunt, record cases.
    Triage {
        /// One pass, then exit (otherwise poll every `interval` until Ctrl-C).
        #[arg(long)]
        once: bool,
        /// Decide and print only: no block, no hunt, no case, no alert marked handled.
        #[arg(long)]
        dry_run: bool,
    },
    /// List triage cases, or show one case with its review items.
    Cases {
        /// The case to show.
        id: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The analyst review queue.
    Review {
        #[command(subcommand)]
        action: ReviewAction,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ReviewAction {
    /// Pending items, oldest first.
    List {
        /// Decided items too.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Carry out the item's proposed block.
    Approve {
        id: i64,
        /// Who decided (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Record the object as fine: append it to the allowlist with the reason.
    Reject {
        id: i64,
        #[arg(long)]
        reason: String,
        /// Who decided (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

fn print_json(value: &serde_json::Value) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok()).filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "cli".to_string())
}

/// `tibridge triage`: one pass with `--once`, else a pass every `interval` until Ctrl-C.
/// Exit 1 when a pass failed (the alert source or the store), else 0.
pub async fn run_triage(playbook: &mut Playbook, once: bool, dry_run: bool, json: bool) -> Result<u8, Failure> {
    if dry_run {
        playbook.set_dry_run(true);
    }
    let interval = std::time::Duration::from_secs(playbook.policy().interval_seconds.max(1));
    loop {
        let code = match playbook.run_once(now()).await {
            Ok(report) => {
                print_report(&report, json)?;
                exit::OK
            }
            Err(error) => {
                if json {
                    print_json(&json!({ "error": error.to_string() }))?;
                } else {
                    eprintln!("triage pass failed: {error}");
                }
                exit::RUNTIME
            }
        };
        if once {
            return Ok(code);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
        }
    }
}

fn print_report(report: &TriageReport, json: bool) -> Result<(), Failure> {
    if json {
        return print_json(&serde_json::to_value(report)?);
    }
    println!(
        "triage {}..{}{}: {} alerts seen, {} handled, {} already handled; {} objects: {} benign, {} to review, {} blocked, {} block failures",
        iso_seconds(report.since),
        iso_seconds(report.until),
        if report.dry_run { " (dry run)" } else { "" },
        report.alerts_seen,
        report.alerts_handled,
        report.alerts_skipped,
        report.objects_examined,
        report.benign,
        report.reviews,
        report.blocked,
        report.block_failures
    );
    println!(
        "  reputation: {} lookups, {} from cache; sandbox: {} submissions, {} from cache",
        report.reputation_lookups, report.reputation_cache_hits, report.sandbox_submissions, report.sandbox_cache_hits
    );
    for alert in &report.alerts {
        print_alert(alert);
    }
    Ok(())
}

fn print_alert(alert: &AlertOutcome) {
    let case = alert.case_id.map_or("no case (dry run)".to_string(), |id| format!("case {id}"));
    println!("alert {}: {} ({case})", alert.alert_id, alert.status.as_str());
    for object in &alert.objects {
        let what = object.indicator.as_ref().map_or_else(|| object.raw_value.clone(), |i| i.to_string());
        match (&object.skipped, &object.decided) {
            (Some(reason), _) => println!("  {what}: skipped, {reason}"),
            (None, Some(decided)) => {
                let detail = match &decided.decision {
                    tibridge_engine::triage::Decision::Review { reason } => format!(": {reason}"),
                    _ => String::new(),
                };
                println!("  {what}: {} by {}{detail}", decided.decision.name(), decided.rule.as_str());
                for withheld in &decided.withheld {
                    println!("    not blocked: {} is {}", withheld.indicator, withheld.reason);
                }
            }
            (None, None) => println!("  {what}: not decided"),
        }
    }
    if alert.case_id.is_none() && !alert.would_block.is_empty() {
        let list: Vec<String> = alert.would_block.iter().map(|i| i.to_string()).collect();
        println!("  would block: {}", list.join(", "));
    }
    if !alert.already_blocked.is_empty() {
        let list: Vec<String> = alert.already_blocked.iter().map(|i| i.to_string()).collect();
        println!("  already blocked by triage: {}", list.join(", "));
    }
    for block in &alert.blocks {
        match &block.error {
            None => println!("  blocked {}", block.indicator),
            Some(error) => println!("  block of {} failed: {error}", block.indicator),
        }
    }
    if let Some(hunt) = &alert.hunt {
        match &hunt.outcome {
            Ok(o) => println!("  hunt {}: report {}, sweep {}", hunt.report_name, o.report_id, o.status),
            Err(e) => println!("  hunt {} failed: {e}", hunt.report_name),
        }
    }
}

/// `tibridge cases [ID]`. Exit 3 when the asked case does not exist.
pub async fn run_cases(store: &Store, id: Option<i64>, limit: usize, json: bool) -> Result<u8, Failure> {
    match id {
        Some(id) => {
            let Some(case) = store.case(id).await? else {
                if json {
                    print_json(&json!({ "error": format!("no case {id}") }))?;
                } else {
                    eprintln!("no case {id}");
                }
                return Ok(exit::REFUSED);
            };
            let reviews = store.case_reviews(id).await?;
            if json {
                print_json(&json!({ "case": case, "reviews": reviews }))?;
                return Ok(exit::OK);
            }
            println!(
                "case {} for alert {} ({}): {}, opened {}, updated {}",
                case.id,
                case.alert_id,
                case.source,
                case.status.as_str(),
                iso_seconds(case.created_at),
                iso_seconds(case.updated_at)
            );
            let pretty = serde_json::to_string_pretty(&case.summary)?;
            println!("{pretty}");
            for item in &reviews {
                print_review(item);
            }
        }
        None => {
            let cases = store.cases(limit).await?;
            if json {
                print_json(&json!(cases))?;
                return Ok(exit::OK);
            }
            if cases.is_empty() {
                println!("no cases");
            }
            for case in &cases {
                println!(
                    "case {:>5}  {}  {:<8} alert {} ({})",
                    case.id,
                    iso_seconds(case.created_at),
                    case.status.as_str(),
                    case.alert_id,
                    case.source
                );
            }
        }
    }
    Ok(exit::OK)
}

fn print_review(item: &ReviewItem) {
    let targets = item
        .proposed_action
        .get("targets")
        .and_then(|t| t.as_array())
        .map(|t| {
            t.iter()
                .filter_map(|v| Some(format!("{}:{}", v.get("kind")?.as_str()?, v.get("value")?.as_str()?)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let decided = match (&item.decided_by, item.decided_at) {
        (Some(by), Some(at)) => format!(
            " by {by} at {}{}",
            iso_seconds(at),
            item.decision_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
        _ => String::new(),
    };
    println!(
        "review {:>5}  case {}  {}  {}{decided}\n        {}\n        approve would block: {}",
        item.id,
        item.case_id,
        item.object,
        item.status.as_str(),
        item.reason,
        if targets.is_empty() { "nothing" } else { &targets }
    );
}

/// `tibridge review ...`. Exit 3 when a decision is refused (unknown or decided item,
/// nothing blockable, no allowlist), 1 when the block or the allowlist write failed.
pub async fn run_review(playbook: &Playbook, action: ReviewAction, json: bool) -> Result<u8, Failure> {
    let result = match action {
        ReviewAction::List { all, limit } => {
            let status = if all { None } else { Some(ReviewStatus::Pending) };
            let items = playbook.store().review_items(status, limit).await?;
            if json {
                print_json(&json!(items))?;
            } else if items.is_empty() {
                println!("review queue is empty");
            } else {
                for item in &items {
                    print_review(item);
                }
            }
            return Ok(exit::OK);
        }
        ReviewAction::Approve { id, by } => playbook.approve(id, &who(by), now()).await.map(|outcome| {
            if json {
                print_json(&json!({ "approved": outcome }))
            } else {
                for block in &outcome.blocks {
                    println!("blocked {}", block.indicator);
                }
                for (target, reason) in &outcome.withheld {
                    println!("not blocked: {target} is {reason}");
                }
                println!("review {id} approved (case {})", outcome.case_id);
                Ok(())
            }
        }),
        ReviewAction::Reject { id, reason, by } => playbook.reject(id, &who(by), &reason, now()).await.map(|()| {
            if json {
                print_json(&json!({ "rejected": id }))
            } else {
                println!("review {id} rejected; the object is on the allowlist with your reason");
                Ok(())
            }
        }),
    };
    match result {
        Ok(printed) => {
            printed?;
            Ok(exit::OK)
        }
        Err(error) => {
            let code = match error {
                TriageError::NoSuchReview { .. }
                | TriageError::AlreadyDecided { .. }
                | TriageError::NothingToBlock { .. }
                | TriageError::NoAllowlist { .. } => exit::REFUSED,
                _ => exit::RUNTIME,
            };
            if json {
                print_json(&json!({ "error": error.to_string() }))?;
            } else {
                eprintln!("{error}");
            }
            Ok(code)
        }
    }
}
