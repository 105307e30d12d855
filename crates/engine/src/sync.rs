//! The sync loop: collect every source into the catalog, compute each sink's desired state,
//! plan against its ledger, refuse mass removals, and apply in batches.
//!
//! The ledger is written after each batch the sink confirmed, so a crash or kill at any
//! point loses nothing and duplicates nothing on the next run. A source that fails to read
//! never counts as "all its indicators are gone": nothing it said is retired.

use crate::config::{Config, SinkConfig, SinkKind, SourceConfig, SourceKind};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use tibridge_connectors::apex_central::ApexCentralSink;
use tibridge_connectors::deep_security::DeepSecuritySink;
use tibridge_connectors::edl::EdlSink;
use tibridge_connectors::misp::{MispFeedSource, MispFileSource, MispSource};
use tibridge_connectors::stix_file::{StixFileSink, StixFileSource};
use tibridge_connectors::text_file::TextFileSource;
use tibridge_connectors::vision_one::VisionOneSink;
use tibridge_connectors::{ItemOutcome, Sink, SinkStyle, Source, SourceError};
use tibridge_core::filters::allowlist::Allowlist;
use tibridge_core::filters::warninglist::{Warninglist, WarninglistSet};
use tibridge_core::plan::{plan, GuardrailRefusal, LedgerEntry, Plan};
use tibridge_core::policy::{DesiredState, DesiredStateBuilder, FilterReason, Filters};
use tibridge_core::{Indicator, Observation};
use tibridge_store::{AuditRecord, ReadOutcome, Store, StoreError, SyncRunRecord, WriteStats};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("filters: {0}")]
    Filters(String),
    /// A source or sink could not be built from its settings (a missing secret, a bad URL).
    #[error("{0}")]
    Build(String),
}

/// Hooks for a progress display; the engine stays free of any terminal code.
pub trait Progress: Send + Sync {
    fn source_started(&self, _source_id: &str) {}
    fn observations_written(&self, _source_id: &str, _count: u64) {}
    fn source_finished(&self, _report: &SourceReport) {}
    fn apply_started(&self, _sink_id: &str, _changes: u64) {}
    fn apply_advanced(&self, _sink_id: &str, _done: u64) {}
    fn apply_finished(&self, _sink_id: &str) {}
}

/// No progress display (pipes, tests, `--json`).
pub struct Silent;
impl Progress for Silent {}

/// What reading one source did to the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub source_id: String,
    pub items_read: u64,
    pub written: WriteStats,
    pub retired: u64,
    pub complete: bool,
    pub skipped: Vec<String>,
    pub error: Option<String>,
}

/// One sink's plan with the context a reader needs to trust it.
#[derive(Debug, Clone, Serialize)]
pub struct SinkPlan {
    pub sink_id: String,
    pub sink_kind: &'static str,
    pub plan: Plan,
    /// Set when the plan removes more than the sink's `max_removal_ratio`.
    pub refusal: Option<GuardrailRefusal>,
    /// How many indicators each rule kept out (`warninglist`, `tlp_too_high`, ...).
    pub filtered_by_rule: BTreeMap<String, u64>,
    /// Indicators that passed every filter but not the capacity.
    pub left_out_by_capacity: u64,
    #[serde(skip)]
    desired: DesiredState,
    #[serde(skip)]
    reasons: HashMap<Indicator, FilterReason>,
}

impl SinkPlan {
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }
}

/// What applying one sink's plan did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ApplyReport {
    pub sink_id: String,
    pub added: u64,
    pub removed: u64,
    pub failed: Vec<String>,
    /// `applied`, `dry-run`, `refused: ...`, `incomplete: ...`.
    pub outcome: String,
    pub warnings: Vec<String>,
}

struct SinkRuntime {
    config: SinkConfig,
    sink: Box<dyn Sink>,
}

pub struct Engine {
    pub config: Config,
    pub store: Store,
    pub filters: Filters,
    /// Problems loading the filters that did not stop the run (a broken warninglist).
    pub filter_warnings: Vec<String>,
    sources: Vec<(SourceConfig, Box<dyn Source>)>,
    sinks: Vec<SinkRuntime>,
}

impl Engine {
    /// Opens the store, loads the filters and builds every source and sink.
    pub async fn open(config: Config) -> Result<Engine, EngineError> {
        if let Some(dir) = config.store_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Filters(format!("cannot create {}: {e}", dir.display())))?;
        }
        let store = Store::open_sqlite(&config.store_path).await?;
        let (filters, filter_warnings) = load_filters(&config)?;
        let sources =
            config.sources.iter().map(|c| Ok((c.clone(), build_source(c)?))).collect::<Result<_, EngineError>>()?;
        let sinks = config
            .sinks
            .iter()
            .map(|c| Ok(SinkRuntime { config: c.clone(), sink: build_sink(c)? }))
            .collect::<Result<_, EngineError>>()?;
        Ok(Engine { config, store, filters, filter_warnings, sources, sinks })
    }

    /// One line per source and sink saying what it will do (`tibridge check`).
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .sources
            .iter()
            .map(|(c, s)| format!("source {} ({}): {}", c.id, c.kind.name(), s.describe()))
            .collect();
        for runtime in &self.sinks {
            let kinds: Vec<&str> = runtime.config.policy.kinds.iter().map(|k| k.as_str()).collect();
            lines.push(format!(
                "sink {} ({}): {}; takes {}; max TLP {}; refuses plans removing more than {:.0}%",
                runtime.config.id,
                runtime.config.kind.name(),
                runtime.sink.describe(),
                kinds.join(", "),
                runtime.config.policy.max_tlp.map_or("any".to_string(), |t| t.to_string()),
                runtime.config.max_removal_ratio * 100.0
            ));
        }
        lines
    }

    /// Reads every source into the catalog. A source that fails is reported, not fatal.
    pub async fn collect(&self, progress: &dyn Progress) -> Result<Vec<SourceReport>, EngineError> {
        let mut reports = Vec::with_capacity(self.sources.len());
        for (config, source) in &self.sources {
            progress.source_started(&config.id);
            let report = self.collect_one(config, source.as_ref(), progress).await?;
            progress.source_finished(&report);
            reports.push(report);
        }
        Ok(reports)
    }

    async fn collect_one(
        &self,
        config: &SourceConfig,
        source: &dyn Source,
        progress: &dyn Progress,
    ) -> Result<SourceReport, EngineError> {
        let cursor = self.store.cursor(&config.id).await?;
        let mut read = self.store.begin_read(&config.id).await?;
        let (sender, mut receiver) = mpsc::channel::<Vec<Observation>>(4);
        let writer = async {
            let mut written = 0u64;
            while let Some(batch) = receiver.recv().await {
                self.store.write_observations(&mut read, &batch).await?;
                written += batch.len() as u64;
                progress.observations_written(&config.id, written);
            }
            Ok::<(), StoreError>(())
        };
        let (read_result, write_result) = tokio::join!(source.read(cursor, sender), writer);
        write_result?;
        let stats = read.stats;
        let outcome = match &read_result {
            Ok(summary) => ReadOutcome {
                complete: summary.complete,
                error: None,
                items_read: summary.items_read,
                skipped: summary.skipped.iter().map(|s| format!("{}: {}", s.item, s.reason)).collect(),
                next_cursor: summary.next_cursor.clone(),
            },
            Err(e) => ReadOutcome { complete: false, error: Some(e.to_string()), ..ReadOutcome::default() },
        };
        for skipped in &outcome.skipped {
            tracing::debug!(source = %config.id, "skipped {skipped}");
        }
        if let Err(SourceError::Unavailable { reason, .. }) = &read_result {
            tracing::error!(source = %config.id, "not read, nothing it said is retired: {reason}");
        }
        let retired = self.store.finish_read(read, &outcome).await?;
        Ok(SourceReport {
            source_id: config.id.clone(),
            items_read: outcome.items_read,
            written: stats,
            retired,
            complete: outcome.complete,
            skipped: outcome.skipped,
            error: outcome.error,
        })
    }

    /// Computes every sink's desired state and plan from the catalog as it is now.
    pub async fn plan(&self) -> Result<Vec<SinkPlan>, EngineError> {
        let now = tibridge_core::timestamp::now();
        // The catalog streams past once and every sink evaluates each indicator as it goes,
        // so planning never holds the whole catalog in memory.
        let mut builders: Vec<DesiredStateBuilder> =
            self.sinks.iter().map(|r| DesiredStateBuilder::new(&r.config.policy, &self.filters, now)).collect();
        self.store
            .catalog_each(|item| {
                for builder in &mut builders {
                    builder.push(&item.indicator, &item.observations);
                }
            })
            .await?;
        let mut plans = Vec::with_capacity(self.sinks.len());
        for (runtime, builder) in self.sinks.iter().zip(builders) {
            let desired = builder.finish();
            let ledger = self.store.ledger(&runtime.config.id).await?;
            let plan = plan(&runtime.config.id, &desired.entries, &ledger, now);
            let refusal = plan.check_removal_guardrail(runtime.config.max_removal_ratio).err();
            let mut filtered_by_rule = BTreeMap::new();
            for (_, reason) in &desired.filtered {
                *filtered_by_rule.entry(rule_name(reason)).or_insert(0) += 1;
            }
            // Only the reasons of what is being removed are worth keeping, for the audit log.
            let removing: HashSet<&Indicator> = plan.removals.iter().map(|e| &e.indicator).collect();
            let reasons = desired.filtered.iter().filter(|(i, _)| removing.contains(i)).cloned().collect();
            plans.push(SinkPlan {
                sink_id: runtime.config.id.clone(),
                sink_kind: runtime.config.kind.name(),
                left_out_by_capacity: desired.left_out_by_capacity().count() as u64,
                refusal,
                filtered_by_rule,
                plan,
                desired,
                reasons,
            });
        }
        Ok(plans)
    }

    /// Applies plans. A refused plan is skipped unless `force`; the others still apply.
    pub async fn apply(
        &self,
        plans: &[SinkPlan],
        force: bool,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<Vec<ApplyReport>, EngineError> {
        let mut reports = Vec::with_capacity(plans.len());
        for sink_plan in plans {
            let Some(runtime) = self.sinks.iter().find(|r| r.config.id == sink_plan.sink_id) else {
                continue;
            };
            let started_at = tibridge_core::timestamp::now();
            let report = if dry_run {
                ApplyReport { sink_id: sink_plan.sink_id.clone(), outcome: "dry-run".into(), ..ApplyReport::default() }
            } else if let (Some(refusal), false) = (&sink_plan.refusal, force) {
                ApplyReport {
                    sink_id: sink_plan.sink_id.clone(),
                    outcome: format!("refused: {refusal}"),
                    ..ApplyReport::default()
                }
            } else if sink_plan.plan.is_empty() {
                ApplyReport {
                    sink_id: sink_plan.sink_id.clone(),
                    outcome: "unchanged".into(),
                    ..ApplyReport::default()
                }
            } else {
                progress.apply_started(
                    &sink_plan.sink_id,
                    (sink_plan.plan.additions.len() + sink_plan.plan.removals.len()) as u64,
                );
                let report = match runtime.sink.style() {
                    SinkStyle::Snapshot => self.apply_snapshot(runtime, sink_plan, force).await?,
                    SinkStyle::Incremental { max_batch } => {
                        self.apply_incremental(runtime, sink_plan, max_batch.max(1), force, progress).await?
                    }
                };
                progress.apply_finished(&sink_plan.sink_id);
                report
            };
            self.store
                .record_sync_run(&SyncRunRecord {
                    sink_id: sink_plan.sink_id.clone(),
                    started_at,
                    finished_at: tibridge_core::timestamp::now(),
                    dry_run,
                    additions: report.added,
                    removals: report.removed,
                    failures: report.failed.len() as u64,
                    outcome: report.outcome.clone(),
                })
                .await?;
            reports.push(report);
        }
        Ok(reports)
    }

    async fn apply_snapshot(
        &self,
        runtime: &SinkRuntime,
        sink_plan: &SinkPlan,
        force: bool,
    ) -> Result<ApplyReport, EngineError> {
        let sink_id = &sink_plan.sink_id;
        let mut report = ApplyReport { sink_id: sink_id.clone(), ..ApplyReport::default() };
        if let Err(e) = runtime.sink.write_snapshot(&sink_plan.desired.entries).await {
            report.outcome = format!("failed: {e}");
            report.failed.push(e.to_string());
            return Ok(report);
        }
        let now = tibridge_core::timestamp::now();
        let removed: Vec<Indicator> = sink_plan.plan.removals.iter().map(|e| e.indicator.clone()).collect();
        self.store.ledger_remove(sink_id, &removed).await?;
        let added: Vec<LedgerEntry> = sink_plan
            .plan
            .additions
            .iter()
            .map(|e| LedgerEntry {
                indicator: e.indicator.clone(),
                remote_id: None,
                added_at: now,
                expires_at: e.expires_at,
            })
            .collect();
        self.store.ledger_add(sink_id, &added).await?;
        let mut audit: Vec<AuditRecord> =
            sink_plan.plan.removals.iter().map(|e| self.removal_record(sink_plan, e, "written", force)).collect();
        audit.extend(sink_plan.plan.additions.iter().map(|e| addition_record(sink_id, e, "written")));
        self.store.audit(&audit).await?;
        report.added = added.len() as u64;
        report.removed = removed.len() as u64;
        report.outcome = "applied".into();
        Ok(report)
    }

    async fn apply_incremental(
        &self,
        runtime: &SinkRuntime,
        sink_plan: &SinkPlan,
        max_batch: usize,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<ApplyReport, EngineError> {
        let sink_id = &sink_plan.sink_id;
        let mut report = ApplyReport { sink_id: sink_id.clone(), ..ApplyReport::default() };
        let mut done = 0u64;
        let mut stopped: Option<String> = None;

        // Removals first: they free room on controls with a hard capacity.
        for batch in sink_plan.plan.removals.chunks(max_batch) {
            let outcomes = match runtime.sink.remove(batch).await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    stopped = Some(e.to_string());
                    break;
                }
            };
            let mut confirmed = Vec::new();
            let mut audit = Vec::new();
            for (entry, outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    ItemOutcome::Done { .. } => {
                        confirmed.push(entry.indicator.clone());
                        audit.push(self.removal_record(sink_plan, entry, "removed", force));
                    }
                    ItemOutcome::Failed { reason, .. } | ItemOutcome::CapacityFull { reason } => {
                        report.failed.push(format!("remove {}: {reason}", entry.indicator));
                        audit.push(AuditRecord {
                            response: format!("failed: {reason}"),
                            ..self.removal_record(sink_plan, entry, "", force)
                        });
                    }
                }
            }
            self.store.ledger_remove(sink_id, &confirmed).await?;
            self.store.audit(&audit).await?;
            report.removed += confirmed.len() as u64;
            done += batch.len() as u64;
            progress.apply_advanced(sink_id, done);
        }

        if stopped.is_none() {
            'batches: for batch in sink_plan.plan.additions.chunks(max_batch) {
                let outcomes = match runtime.sink.add(batch).await {
                    Ok(outcomes) => outcomes,
                    Err(e) => {
                        stopped = Some(e.to_string());
                        break;
                    }
                };
                let now = tibridge_core::timestamp::now();
                let mut confirmed = Vec::new();
                let mut audit = Vec::new();
                let mut full = None;
                for (entry, outcome) in batch.iter().zip(outcomes) {
                    match outcome {
                        ItemOutcome::Done { remote_id } => {
                            let response =
                                remote_id.as_ref().map_or("added".to_string(), |id| format!("added as {id}"));
                            audit.push(addition_record(sink_id, entry, &response));
                            confirmed.push(LedgerEntry {
                                indicator: entry.indicator.clone(),
                                remote_id,
                                added_at: now,
                                expires_at: entry.expires_at,
                            });
                        }
                        ItemOutcome::Failed { reason, .. } => {
                            report.failed.push(format!("add {}: {reason}", entry.indicator));
                            audit.push(addition_record(sink_id, entry, &format!("failed: {reason}")));
                        }
                        ItemOutcome::CapacityFull { reason } => {
                            audit.push(addition_record(sink_id, entry, &format!("refused, list full: {reason}")));
                            full.get_or_insert(reason);
                        }
                    }
                }
                self.store.ledger_add(sink_id, &confirmed).await?;
                self.store.audit(&audit).await?;
                report.added += confirmed.len() as u64;
                done += batch.len() as u64;
                progress.apply_advanced(sink_id, done);
                if let Some(reason) = full {
                    let left = sink_plan.plan.additions.len() as u64 - report.added - report.failed.len() as u64;
                    let warning = format!(
                        "sink {sink_id} is full ({reason}); {left} indicators were not added. Set `capacity` on the sink \
                         so the best ones are chosen, or free room on the control"
                    );
                    tracing::warn!("{warning}");
                    report.warnings.push(warning);
                    break 'batches;
                }
            }
        }
        report.outcome = match stopped {
            Some(reason) => {
                report.failed.push(reason.clone());
                format!("incomplete: {reason}; the next run resumes where this one stopped")
            }
            None if report.failed.is_empty() => "applied".into(),
            None => format!("applied with {} failures", report.failed.len()),
        };
        Ok(report)
    }

    fn removal_record(&self, sink_plan: &SinkPlan, entry: &LedgerEntry, response: &str, force: bool) -> AuditRecord {
        let why = match sink_plan.reasons.get(&entry.indicator) {
            Some(reason) => reason.to_string(),
            None => "no longer in any source".to_string(),
        };
        AuditRecord {
            at: tibridge_core::timestamp::now(),
            actor: format!("sync:{}", sink_plan.sink_id),
            action: "remove".into(),
            target: sink_plan.sink_id.clone(),
            item: entry.indicator.to_string(),
            reason: if force && sink_plan.refusal.is_some() {
                format!("{why} (guardrail overridden with --force)")
            } else {
                why
            },
            response: response.to_string(),
        }
    }
}

fn addition_record(sink_id: &str, entry: &tibridge_core::policy::DesiredEntry, response: &str) -> AuditRecord {
    AuditRecord {
        at: tibridge_core::timestamp::now(),
        actor: format!("sync:{sink_id}"),
        action: "add".into(),
        target: sink_id.to_string(),
        item: entry.indicator.to_string(),
        reason: if entry.provenance.is_empty() { "desired".into() } else { entry.provenance.clone() },
        response: response.to_string(),
    }
}

/// The rule name of a reason as it appears in serialized output (`tlp_too_high`).
pub fn rule_name(reason: &FilterReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.get("rule").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn build_source(config: &SourceConfig) -> Result<Box<dyn Source>, EngineError> {
    let id = config.id.clone();
    let built: Box<dyn Source> = match &config.kind {
        SourceKind::StixFile { path } => Box::new(StixFileSource::new(id, path.clone())),
        SourceKind::MispFile { path } => Box::new(MispFileSource::new(id, path.clone())),
        SourceKind::TextFile { path } => Box::new(TextFileSource::new(id, path.clone())),
        SourceKind::Misp(settings) => {
            Box::new(MispSource::from_config(id, settings).map_err(|e| EngineError::Build(e.to_string()))?)
        }
        SourceKind::MispFeed(settings) => {
            Box::new(MispFeedSource::from_config(id, settings).map_err(|e| EngineError::Build(e.to_string()))?)
        }
    };
    Ok(built)
}

fn build_sink(config: &SinkConfig) -> Result<Box<dyn Sink>, EngineError> {
    let id = config.id.clone();
    let built: Box<dyn Sink> = match &config.kind {
        SinkKind::Edl { dir } => Box::new(EdlSink::new(id, dir.clone(), config.policy.kinds.iter().copied().collect())),
        SinkKind::StixFile { path } => Box::new(StixFileSink::new(id, path.clone())),
        SinkKind::ApexCentral(settings) => {
            Box::new(ApexCentralSink::from_config(id, settings).map_err(|e| EngineError::Build(e.to_string()))?)
        }
        SinkKind::DeepSecurity(settings) => {
            Box::new(DeepSecuritySink::from_config(id, settings).map_err(|e| EngineError::Build(e.to_string()))?)
        }
        SinkKind::VisionOne(settings) => {
            Box::new(VisionOneSink::from_config(id, settings).map_err(|e| EngineError::Build(e.to_string()))?)
        }
    };
    Ok(built)
}

/// Loads warninglists and the allowlist. A broken list is a warning, not a failure: losing
/// one list must not stop the others from protecting the sinks. A missing directory or
/// allowlist file that the config names is an error, because silently running without
/// the user's false-positive protection is worse than not running.
fn load_filters(config: &Config) -> Result<(Filters, Vec<String>), EngineError> {
    let mut warnings = Vec::new();
    let mut lists = Vec::new();
    if let Some(dir) = &config.filters.warninglists {
        for path in warninglist_files(dir).map_err(EngineError::Filters)? {
            match std::fs::read(&path) {
                Ok(bytes) => match Warninglist::from_json(&bytes) {
                    Ok(list) => lists.push(list),
                    Err(e) => warnings.push(format!("warninglist {}: {e}", path.display())),
                },
                Err(e) => warnings.push(format!("warninglist {}: {e}", path.display())),
            }
        }
    }
    let allowlist = match &config.filters.allowlist {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| EngineError::Filters(format!("allowlist {}: {e}", path.display())))?;
            let (allowlist, errors) = Allowlist::parse(&text);
            warnings.extend(errors.into_iter().map(|e| format!("allowlist {}: {e}", path.display())));
            allowlist
        }
        None => Allowlist::default(),
    };
    let max_age_by_source = config.sources.iter().filter_map(|s| s.max_age.map(|age| (s.id.clone(), age))).collect();
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    Ok((
        Filters {
            warninglists: WarninglistSet::new(lists),
            allowlist,
            max_cidr_prefix_v4: config.filters.max_cidr_prefix_v4,
            max_cidr_prefix_v6: config.filters.max_cidr_prefix_v6,
            max_age_by_source,
        },
        warnings,
    ))
}

/// `<dir>/<name>/list.json` (the misp-warninglists layout) and `<dir>/*.json`, sorted.
fn warninglist_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("warninglists directory {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let list = path.join("list.json");
            if list.is_file() {
                files.push(list);
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
