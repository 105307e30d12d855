//! One function per command: run the engine, print for people or as JSON, pick the exit code.

use crate::progress::Bars;
use crate::triage_commands::{run_cases, run_review, run_triage, TriageCommand};
use crate::{exit, Cli, Command, ExportFormat, Failure};
use serde_json::json;
use std::io::Write;
use tibridge_connectors::edl;
use tibridge_connectors::stix_file::bundle_entry;
use tibridge_core::policy::{evaluate, DesiredEntry, SinkPolicy};
use tibridge_core::stix::{write_bundle, BundleOptions};
use tibridge_core::timestamp::{iso_seconds, now};
use tibridge_core::IndicatorKind;
use tibridge_engine::sync::{ApplyReport, SinkPlan, SourceReport};
use tibridge_engine::{Config, Engine};

pub async fn run(cli: Cli) -> Result<u8, Failure> {
    // These two bring their own configuration.
    match &cli.command {
        Command::Demo { dir } => return crate::demo::run_demo(dir, cli.json).await,
        Command::Lab { lab_config, write_config } => {
            return crate::demo::run_lab(lab_config.as_deref(), write_config.as_deref()).await
        }
        _ => {}
    }
    let config = Config::load(&cli.config).map_err(|e| Failure { code: exit::CONFIG, error: e.into() })?;
    let engine = match Engine::open(config).await {
        Ok(engine) => engine,
        Err(e @ tibridge_engine::EngineError::Build(_)) => return Err(Failure { code: exit::CONFIG, error: e.into() }),
        Err(e) => return Err(Failure { code: exit::RUNTIME, error: anyhow::Error::from(e).context("cannot start") }),
    };
    let json = cli.json;
    let code = match cli.command {
        Command::Check => check(&engine, json),
        Command::Collect => collect(&engine, json).await?,
        Command::Plan => plan(&engine, json).await?,
        Command::Sync { dry_run, force } => sync(&engine, json, dry_run, force).await?,
        Command::Status => status(&engine, json).await?,
        Command::Indicators { kind, search, limit } => indicators(&engine, json, kind, search, limit).await?,
        Command::Export { format, sink } => export(&engine, format, sink).await?,
        Command::Audit { limit } => audit(&engine, json, limit).await?,
        Command::Triage(command) => triage(&engine, command, json).await?,
        Command::Demo { .. } | Command::Lab { .. } => exit::OK,
    };
    engine.store.close().await;
    Ok(code)
}

pub(crate) fn print_json_value(value: &serde_json::Value) -> Result<(), Failure> {
    print_json(value)
}

/// Writes straight to standard output: a plan of a million entries never becomes a JSON tree
/// in memory first.
fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn check(engine: &Engine, json: bool) -> u8 {
    let lines = engine.describe();
    if json {
        let _ = print_json(&json!({
            "config": engine.config.path,
            "store": engine.config.store_path,
            "components": lines,
            "warninglists": engine.filters.warninglists.len(),
            "allowlist_entries": engine.filters.allowlist.len(),
            "warnings": engine.filter_warnings,
        }));
    } else {
        println!("config {} is valid", engine.config.path.display());
        println!("store: {}", engine.config.store_path.display());
        println!(
            "filters: {} warninglists, {} allowlist entries, networks no wider than /{} (IPv4) and /{} (IPv6)",
            engine.filters.warninglists.len(),
            engine.filters.allowlist.len(),
            engine.filters.max_cidr_prefix_v4,
            engine.filters.max_cidr_prefix_v6
        );
        for line in lines {
            println!("  {line}");
        }
        for warning in &engine.filter_warnings {
            println!("warning: {warning}");
        }
    }
    exit::OK
}

async fn collect_and_plan(engine: &Engine, bars: &Bars) -> Result<(Vec<SourceReport>, Vec<SinkPlan>), Failure> {
    let reports = engine.collect(bars).await?;
    let plans = engine.plan().await?;
    Ok((reports, plans))
}

pub(crate) fn print_sources(reports: &[SourceReport]) {
    for r in reports {
        match &r.error {
            Some(error) => println!("source {}: NOT READ ({error}); nothing it said before is retired", r.source_id),
            None => println!(
                "source {}: {} items, {} new, {} changed, {} unchanged, {} retired, {} skipped",
                r.source_id,
                r.items_read,
                r.written.inserted,
                r.written.updated,
                r.written.unchanged,
                r.retired,
                r.skipped.len()
            ),
        }
        for skipped in r.skipped.iter().take(10) {
            println!("  skipped {skipped}");
        }
        if r.skipped.len() > 10 {
            println!("  ... and {} more skipped (run with -vv to log them all)", r.skipped.len() - 10);
        }
    }
}

pub(crate) fn print_plans(plans: &[SinkPlan]) {
    for p in plans {
        println!(
            "sink {} ({}): +{} -{} ={} (holds {})",
            p.sink_id,
            p.sink_kind,
            p.plan.additions.len(),
            p.plan.removals.len(),
            p.plan.unchanged,
            p.plan.ledger_size
        );
        for entry in p.plan.additions.iter().take(20) {
            println!("  + {}", entry.indicator);
        }
        if p.plan.additions.len() > 20 {
            println!("  + ... and {} more", p.plan.additions.len() - 20);
        }
        for entry in p.plan.removals.iter().take(20) {
            println!("  - {}", entry.indicator);
        }
        if p.plan.removals.len() > 20 {
            println!("  - ... and {} more", p.plan.removals.len() - 20);
        }
        if !p.filtered_by_rule.is_empty() {
            let rules: Vec<String> = p.filtered_by_rule.iter().map(|(rule, n)| format!("{rule} {n}")).collect();
            println!("  filtered: {}", rules.join(", "));
        }
        if p.left_out_by_capacity > 0 {
            println!(
                "  warning: {} indicators left out by the sink's capacity (the best ones were kept)",
                p.left_out_by_capacity
            );
        }
        if let Some(refusal) = &p.refusal {
            println!("  REFUSED: {refusal}");
        }
    }
}

/// What `plan` and `sync` print with `--json`.
#[derive(serde::Serialize)]
struct RunOutput<'a> {
    sources: &'a [SourceReport],
    plans: &'a [SinkPlan],
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a [ApplyReport]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
}

async fn collect(engine: &Engine, json: bool) -> Result<u8, Failure> {
    let reports = engine.collect(&Bars::new(json)).await?;
    if json {
        print_json(&json!({ "sources": reports }))?;
    } else {
        print_sources(&reports);
    }
    Ok(if reports.iter().any(|r| r.error.is_some()) { exit::RUNTIME } else { exit::OK })
}

async fn plan(engine: &Engine, json: bool) -> Result<u8, Failure> {
    let bars = Bars::new(json);
    let (reports, plans) = collect_and_plan(engine, &bars).await?;
    let refused = plans.iter().any(|p| p.refusal.is_some());
    if json {
        print_json(&RunOutput { sources: &reports, plans: &plans, applied: None, dry_run: None })?;
    } else {
        print_sources(&reports);
        print_plans(&plans);
    }
    Ok(if refused { exit::REFUSED } else { exit::OK })
}

async fn sync(engine: &Engine, json: bool, dry_run: bool, force: bool) -> Result<u8, Failure> {
    let bars = Bars::new(json);
    let (reports, plans) = collect_and_plan(engine, &bars).await?;
    let applied = engine.apply(&plans, force, dry_run, &bars).await?;
    let refused = !force && !dry_run && plans.iter().any(|p| p.refusal.is_some());
    // A source that could not be read, or a sink that did not take everything, is a
    // failure worth an alert from cron, even though everything else was applied.
    let failed = reports.iter().any(|r| r.error.is_some()) || applied.iter().any(|r| !r.failed.is_empty());
    if json {
        print_json(&RunOutput { sources: &reports, plans: &plans, applied: Some(&applied), dry_run: Some(dry_run) })?;
    } else {
        print_sources(&reports);
        print_plans(&plans);
        print_applied(&applied);
    }
    Ok(if refused {
        exit::REFUSED
    } else if failed {
        exit::RUNTIME
    } else {
        exit::OK
    })
}

pub(crate) fn print_applied(applied: &[ApplyReport]) {
    for r in applied {
        println!("sink {}: {} (+{} -{})", r.sink_id, r.outcome, r.added, r.removed);
        for failure in r.failed.iter().take(10) {
            println!("  failed: {failure}");
        }
        for warning in &r.warnings {
            println!("  warning: {warning}");
        }
    }
}

async fn status(engine: &Engine, json: bool) -> Result<u8, Failure> {
    let sources = engine.store.source_statuses().await?;
    let sinks = engine.store.sink_statuses().await?;
    if json {
        print_json(&json!({ "sources": sources, "sinks": sinks }))?;
        return Ok(exit::OK);
    }
    let when = |t: Option<i64>| t.map_or("never".to_string(), iso_seconds);
    for configured in &engine.config.sources {
        match sources.iter().find(|s| s.source_id == configured.id) {
            Some(s) => println!(
                "source {}: last read {}, last complete read {}, {} active and {} retired observations, last read {} items, {} skipped{}",
                s.source_id,
                when(s.last_read_at),
                when(s.last_complete_read_at),
                s.active_observations,
                s.retired_observations,
                s.last_items_read,
                s.last_skipped,
                s.last_error.as_ref().map(|e| format!(", last error: {e}")).unwrap_or_default()
            ),
            None => println!("source {}: never read", configured.id),
        }
    }
    for configured in &engine.config.sinks {
        match sinks.iter().find(|s| s.sink_id == configured.id) {
            Some(s) => println!(
                "sink {}: {} entries, last sync {} ({})",
                s.sink_id,
                s.entries,
                when(s.last_sync_at),
                s.last_sync_outcome.as_deref().unwrap_or("-")
            ),
            None => println!("sink {}: never synced", configured.id),
        }
    }
    Ok(exit::OK)
}

async fn indicators(
    engine: &Engine,
    json: bool,
    kind: Option<String>,
    search: Option<String>,
    limit: usize,
) -> Result<u8, Failure> {
    let kind = kind
        .map(|k| k.parse::<IndicatorKind>())
        .transpose()
        .map_err(|e| Failure { code: exit::CONFIG, error: e.into() })?;
    let found = engine.store.search_indicators(kind, search.as_deref(), limit).await?;
    let now = now();
    let mut ledgers = Vec::new();
    for sink in &engine.config.sinks {
        let owned: std::collections::HashSet<_> =
            engine.store.ledger(&sink.id).await?.into_iter().map(|e| e.indicator).collect();
        ledgers.push(owned);
    }
    let mut rows = Vec::new();
    for item in &found {
        let sinks: Vec<serde_json::Value> = engine
            .config
            .sinks
            .iter()
            .zip(&ledgers)
            .map(|(sink, owned)| {
                let verdict = evaluate(&item.indicator, &item.observations, &sink.policy, &engine.filters, now);
                json!({
                    "sink": sink.id,
                    "wanted": verdict.is_ok(),
                    "filtered_by": verdict.as_ref().err().map(|r| r.to_string()),
                    "present": owned.contains(&item.indicator),
                })
            })
            .collect();
        rows.push(json!({ "indicator": item.indicator, "observations": item.observations, "sinks": sinks }));
    }
    if json {
        print_json(&json!(rows))?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        println!("no indicator matches");
    }
    for (item, row) in found.iter().zip(&rows) {
        println!("{}", item.indicator);
        for o in &item.observations {
            let mut facts = vec![format!("source {} ref {}", o.source_id, o.source_ref)];
            if let Some(event) = &o.event_ref {
                facts.push(format!("event {event}"));
            }
            if let Some(info) = &o.event_info {
                facts.push(format!("{info:?}"));
            }
            if let Some(tlp) = o.tlp {
                facts.push(tlp.to_string());
            }
            if let Some(c) = o.confidence {
                facts.push(format!("confidence {c}"));
            }
            if !o.to_ids {
                facts.push("not for detection".into());
            }
            if o.deleted {
                facts.push("deleted".into());
            }
            if let Some(until) = o.valid_until {
                facts.push(format!("valid until {}", iso_seconds(until)));
            }
            if !o.tags.is_empty() {
                facts.push(format!("tags {}", o.tags.join(", ")));
            }
            println!("  seen: {}", facts.join("; "));
        }
        for sink in row["sinks"].as_array().into_iter().flatten() {
            let present = if sink["present"].as_bool() == Some(true) { "present" } else { "absent" };
            match sink["filtered_by"].as_str() {
                None => println!("  sink {}: wanted, {present}", sink["sink"].as_str().unwrap_or("")),
                Some(reason) => {
                    println!("  sink {}: filtered ({reason}), {present}", sink["sink"].as_str().unwrap_or(""))
                }
            }
        }
    }
    Ok(exit::OK)
}

async fn export(engine: &Engine, format: ExportFormat, sink: Option<String>) -> Result<u8, Failure> {
    let entries: Vec<DesiredEntry> = match &sink {
        Some(id) => {
            let plans = engine.plan().await?;
            let plan = plans.into_iter().find(|p| &p.sink_id == id).ok_or_else(|| Failure {
                code: exit::CONFIG,
                error: anyhow::anyhow!("no sink {id:?} in {}", engine.config.path.display()),
            })?;
            plan.desired().entries.clone()
        }
        None => {
            let mut everything = SinkPolicy::for_kinds(IndicatorKind::ALL);
            everything.max_tlp = None;
            everything.require_to_ids = false;
            let now = now();
            let mut entries = Vec::new();
            engine
                .store
                .catalog_each(|c| {
                    if let Ok(entry) = evaluate(&c.indicator, &c.observations, &everything, &engine.filters, now) {
                        entries.push(entry);
                    }
                })
                .await?;
            entries
        }
    };
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Stix => {
            let now = now();
            let bundle_entries: Vec<_> = entries.iter().map(|e| bundle_entry(e, now)).collect();
            let bundle =
                write_bundle(&bundle_entries, &BundleOptions { created: now, report_name: None, fresh_ids: false });
            serde_json::to_writer_pretty(&mut out, &bundle)?;
            writeln!(out)?;
        }
        ExportFormat::Edl => {
            let mut lines: Vec<&str> =
                entries.iter().map(|e| edl::line(e.indicator.kind, &e.indicator.value)).collect();
            lines.sort_unstable();
            lines.dedup();
            for line in lines {
                writeln!(out, "{line}")?;
            }
        }
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(["kind", "value", "confidence", "tlp", "expires_at", "provenance"])?;
            for e in &entries {
                writer.write_record([
                    e.indicator.kind.as_str(),
                    &e.indicator.value,
                    &e.confidence.map(|c| c.to_string()).unwrap_or_default(),
                    e.tlp.map(|t| t.as_str()).unwrap_or(""),
                    &e.expires_at.map(iso_seconds).unwrap_or_default(),
                    &e.provenance,
                ])?;
            }
            writer.flush()?;
        }
    }
    Ok(exit::OK)
}

/// The triage playbook from the config's `[triage]` section and the engine's store and filters.
pub(crate) fn build_playbook(engine: &Engine) -> Result<tibridge_engine::triage::Playbook, Failure> {
    let Some(settings) = &engine.config.triage else {
        return Err(Failure {
            code: exit::CONFIG,
            error: anyhow::anyhow!("{} has no [triage] section", engine.config.path.display()),
        });
    };
    tibridge_engine::triage::build(
        engine.store.clone(),
        settings.policy.clone(),
        &settings.connectors,
        engine.filters.clone(),
    )
    .map_err(|e| Failure { code: exit::CONFIG, error: e.into() })
}

async fn triage(engine: &Engine, command: TriageCommand, json: bool) -> Result<u8, Failure> {
    if let TriageCommand::Cases { id, limit } = command {
        return run_cases(&engine.store, id, limit, json).await;
    }
    let mut playbook = build_playbook(engine)?;
    match command {
        TriageCommand::Triage { once, dry_run } => run_triage(&mut playbook, once, dry_run, json).await,
        TriageCommand::Review { action } => run_review(&playbook, action, json).await,
        TriageCommand::Cases { .. } => Ok(exit::OK),
    }
}

async fn audit(engine: &Engine, json: bool, limit: usize) -> Result<u8, Failure> {
    let records = engine.store.audit_log(limit).await?;
    if json {
        print_json(&json!(records))?;
    } else {
        for r in &records {
            println!(
                "{} {} {} {} on {}: {} [{}]",
                iso_seconds(r.at),
                r.actor,
                r.action,
                r.item,
                r.target,
                r.reason,
                r.response
            );
        }
    }
    Ok(exit::OK)
}
