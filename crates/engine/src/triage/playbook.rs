//! The C2 triage playbook: poll detections, claim each once, enrich every highlighted object
//! (cached), decide by [`super::policy`], block on the Vision One Suspicious Object list,
//! hunt, and write a case; objects an analyst must see go to the review queue.
//!
//! It must never block because an enrichment failed, never block what the filters exclude,
//! never handle an alert another run claimed, and in dry-run never change anything outside
//! nor mark an alert handled.
//!
//! # Triage blocks and the sync engine
//!
//! Blocks are recorded in the ledger under the triage's own sink id (`vision-one-triage` by
//! default, [`TriagePolicy::sink_id`]), not under a sync sink's id. The sync engine only
//! removes what its own sink's ledger holds, so a later sync never removes a triage block it
//! does not know about, and the triage never takes over an entry sync added. The blocks
//! carry the configured expiry, so they leave the list on their own.
//!
//! # Dry-run
//!
//! Enrichment still runs (VirusTotal lookups and sandbox submissions are questions, not
//! changes, and their answers are cached), but nothing is blocked, hunted, claimed or
//! written as a case: the report shows what would have been done.

use serde::Serialize;
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tibridge_connectors::alert::{Alert, AlertSource, AlertSourceError};
use tibridge_connectors::enrich::{EnrichError, Enricher, HuntOutcome, Hunter, Reputation, Sandbox, SandboxReport};
use tibridge_connectors::sink::{ItemOutcome, Sink, SinkStyle};
use tibridge_core::plan::LedgerEntry;
use tibridge_core::policy::{DesiredEntry, Filters};
use tibridge_core::stix::{write_bundle, BundleEntry, BundleOptions};
use tibridge_core::Indicator;
use tibridge_store::cases::{CaseStatus, NewReview, ReviewItem, ReviewStatus};
use tibridge_store::{AuditRecord, Store, StoreError};

use super::config::TriagePolicy;
use super::policy::{after_reputation, decide, excluded, Decided, Decision, Step};

/// The audit actor of the playbook's own actions.
pub const ACTOR: &str = "triage:c2";
/// The audit actor of an approved review item's block.
pub const APPROVE_ACTOR: &str = "review:approve";
/// The audit actor of a rejected review item's allowlist entry.
pub const REJECT_ACTOR: &str = "review:reject";

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error(transparent)]
    AlertSource(#[from] AlertSourceError),
    #[error("triage store: {0}")]
    Store(#[from] StoreError),
    #[error("review item {id} does not exist")]
    NoSuchReview { id: i64 },
    #[error("review item {id} was already {status} by {by}")]
    AlreadyDecided { id: i64, status: &'static str, by: String },
    #[error("review item {id}: nothing to block: {reason}")]
    NothingToBlock { id: i64, reason: String },
    #[error("review item {id}: the block on {sink_id} failed for {failed}: nothing more was marked done, the item stays pending")]
    BlockFailed { id: i64, sink_id: String, failed: String },
    #[error("review item {id}: no allowlist file is configured ([triage] allowlist or [filters] allowlist), so a rejection cannot be recorded")]
    NoAllowlist { id: i64 },
    #[error("review item {id}: cannot append to the allowlist {path}: {source}")]
    Allowlist { id: i64, path: PathBuf, source: std::io::Error },
}

/// What happened to one highlighted object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectOutcome {
    pub field: String,
    pub vendor_type: String,
    pub raw_value: String,
    pub indicator: Option<Indicator>,
    /// Why the object was not examined (not an indicator, over the per-alert limit, repeated).
    pub skipped: Option<String>,
    pub reputation: Option<Result<Reputation, EnrichError>>,
    pub reputation_cached: bool,
    pub sandbox: Option<Result<SandboxReport, EnrichError>>,
    pub sandbox_cached: bool,
    pub decided: Option<Decided>,
}

/// One block attempt and the sink's answer.
#[derive(Debug, Clone, Serialize)]
pub struct BlockOutcome {
    pub indicator: Indicator,
    pub done: bool,
    pub remote_id: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The hunt of one alert's blocks.
#[derive(Debug, Clone, Serialize)]
pub struct HuntRecord {
    pub report_name: String,
    pub outcome: Result<HuntOutcome, EnrichError>,
}

/// What the playbook did with one alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertOutcome {
    pub alert_id: String,
    /// `None` in dry-run.
    pub case_id: Option<i64>,
    pub status: CaseStatus,
    pub objects: Vec<ObjectOutcome>,
    /// Targets a dry-run would have blocked, or the blocks attempted.
    pub would_block: Vec<Indicator>,
    /// Targets the triage ledger already holds (blocked for an earlier alert, not expired):
    /// not sent again, not hunted again.
    pub already_blocked: Vec<Indicator>,
    pub blocks: Vec<BlockOutcome>,
    pub hunt: Option<HuntRecord>,
    pub review_ids: Vec<i64>,
}

/// One `run_once`, counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TriageReport {
    pub dry_run: bool,
    pub since: i64,
    pub until: i64,
    pub alerts_seen: u64,
    pub alerts_handled: u64,
    /// Handled before, or claimed by another run.
    pub alerts_skipped: u64,
    pub objects_examined: u64,
    pub reputation_lookups: u64,
    pub reputation_cache_hits: u64,
    pub sandbox_submissions: u64,
    pub sandbox_cache_hits: u64,
    pub benign: u64,
    pub reviews: u64,
    pub blocked: u64,
    pub block_failures: u64,
    pub alerts: Vec<AlertOutcome>,
}

/// What approving a review item did.
#[derive(Debug, Clone, Serialize)]
pub struct ApproveOutcome {
    pub review_id: i64,
    pub case_id: i64,
    pub blocks: Vec<BlockOutcome>,
    pub withheld: Vec<(Indicator, String)>,
}

/// The playbook with everything it talks to.
pub struct Playbook {
    store: Store,
    policy: TriagePolicy,
    alert_source: Arc<dyn AlertSource>,
    reputation: Arc<dyn Enricher>,
    sandbox: Arc<dyn Sandbox>,
    blocker: Arc<dyn Sink>,
    hunter: Option<Arc<dyn Hunter>>,
    filters: Filters,
}

impl Playbook {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        policy: TriagePolicy,
        alert_source: Arc<dyn AlertSource>,
        reputation: Arc<dyn Enricher>,
        sandbox: Arc<dyn Sandbox>,
        blocker: Arc<dyn Sink>,
        hunter: Option<Arc<dyn Hunter>>,
        filters: Filters,
    ) -> Self {
        Playbook { store, policy, alert_source, reputation, sandbox, blocker, hunter, filters }
    }

    pub fn policy(&self) -> &TriagePolicy {
        &self.policy
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Overrides the configured dry-run (the CLI's `--dry-run`).
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.policy.dry_run = dry_run;
    }

    /// One pass over the detections of `[now - lookback, now]`.
    pub async fn run_once(&self, now: i64) -> Result<TriageReport, TriageError> {
        let since = now.saturating_sub(self.policy.lookback_seconds);
        let dry_run = self.policy.dry_run;
        let mut report = TriageReport { dry_run, since, until: now, ..TriageReport::default() };
        let alerts = self.alert_source.poll(since, now).await?;
        let mut seen_ids = HashSet::new();
        // What triage already blocked and is still in force: never sent twice.
        let mut in_force: HashSet<Indicator> = self
            .store
            .ledger(&self.policy.sink_id)
            .await?
            .into_iter()
            .filter(|e| !matches!(e.expires_at, Some(at) if at <= now))
            .map(|e| e.indicator)
            .collect();
        for alert in alerts {
            if !seen_ids.insert(alert.id.clone()) {
                continue;
            }
            report.alerts_seen += 1;
            let mine = if dry_run {
                !self.store.alert_handled(&alert.id).await?
            } else {
                let stale_before = now.saturating_sub(self.policy.stale_claim_seconds);
                self.store.claim_alert(&alert.id, &alert.source_id, now, stale_before).await?
            };
            if !mine {
                report.alerts_skipped += 1;
                continue;
            }
            match self.handle(&alert, now, &mut report, &mut in_force).await {
                Ok(outcome) => {
                    report.alerts_handled += 1;
                    report.alerts.push(outcome);
                }
                Err(error) => {
                    if !dry_run {
                        // Nothing was written for it: let the next run take it again.
                        if let Err(release) = self.store.release_alert(&alert.id).await {
                            tracing::warn!(alert = %alert.id, error = %release, "cannot release the claim of a failed alert");
                        }
                    }
                    return Err(error);
                }
            }
        }
        Ok(report)
    }

    async fn handle(
        &self,
        alert: &Alert,
        now: i64,
        report: &mut TriageReport,
        in_force: &mut HashSet<Indicator>,
    ) -> Result<AlertOutcome, TriageError> {
        let dry_run = self.policy.dry_run;
        let alert_objects: Vec<Indicator> =
            alert.objects.iter().filter_map(|o| o.indicator.as_ref().ok().cloned()).collect();
        let mut objects = Vec::new();
        let mut examined: HashSet<Indicator> = HashSet::new();
        let mut targets: Vec<(Indicator, String)> = Vec::new();
        let mut reviews: Vec<NewReview> = Vec::new();
        let mut benign = 0usize;
        for object in &alert.objects {
            let mut outcome = ObjectOutcome {
                field: object.field.clone(),
                vendor_type: object.vendor_type.clone(),
                raw_value: object.raw_value.clone(),
                indicator: object.indicator.as_ref().ok().cloned(),
                skipped: None,
                reputation: None,
                reputation_cached: false,
                sandbox: None,
                sandbox_cached: false,
                decided: None,
            };
            let indicator = match &object.indicator {
                Err(reason) => {
                    outcome.skipped = Some(format!("not an indicator: {reason}"));
                    objects.push(outcome);
                    continue;
                }
                Ok(indicator) => indicator,
            };
            if examined.contains(indicator) {
                outcome.skipped = Some("same indicator as an earlier object of this alert".into());
                objects.push(outcome);
                continue;
            }
            if examined.len() >= self.policy.max_objects_per_alert {
                outcome.skipped =
                    Some(format!("over max_objects_per_alert ({}): not examined", self.policy.max_objects_per_alert));
                objects.push(outcome);
                continue;
            }
            examined.insert(indicator.clone());
            report.objects_examined += 1;

            let (reputation, cached) = self.reputation_of(indicator, now, report).await?;
            outcome.reputation_cached = cached;
            let sandbox = match after_reputation(indicator, &reputation, &self.policy, &self.filters) {
                Step::Sandbox => {
                    let (answer, cached) = self.sandbox_of(indicator, now, report).await?;
                    outcome.sandbox_cached = cached;
                    Some(answer)
                }
                Step::Decided(_) => None,
            };
            let decided = decide(indicator, &alert_objects, &reputation, sandbox.as_ref(), &self.policy, &self.filters);
            match &decided.decision {
                Decision::Benign => {
                    benign += 1;
                    report.benign += 1;
                }
                Decision::Review { reason } => {
                    report.reviews += 1;
                    reviews.push(NewReview {
                        object: indicator.clone(),
                        proposed_action: json!({
                            "action": "block",
                            "sink": self.policy.sink_id,
                            "targets": decided.proposed,
                            "rule": decided.rule,
                        }),
                        reason: reason.clone(),
                    });
                }
                Decision::Block { targets: block } => {
                    for target in block {
                        if !targets.iter().any(|(t, _)| t == target) {
                            let provenance = format!(
                                "tibridge triage: alert {} object {} ({})",
                                alert.id,
                                indicator,
                                decided.rule.as_str()
                            );
                            targets.push((target.clone(), provenance));
                        }
                    }
                }
            }
            outcome.reputation = Some(reputation);
            outcome.sandbox = sandbox;
            outcome.decided = Some(decided);
            objects.push(outcome);
        }

        let would_block: Vec<Indicator> = targets.iter().map(|(t, _)| t.clone()).collect();
        let (already, targets): (Vec<_>, Vec<_>) = targets.into_iter().partition(|(t, _)| in_force.contains(t));
        let already_blocked: Vec<Indicator> = already.into_iter().map(|(t, _)| t).collect();
        let mut blocks = Vec::new();
        let mut hunt = None;
        if !dry_run && !targets.is_empty() {
            blocks = self.block(&targets, ACTOR, now).await?;
            in_force.extend(blocks.iter().filter(|b| b.done).map(|b| b.indicator.clone()));
            for block in &blocks {
                if block.done {
                    report.blocked += 1;
                } else {
                    report.block_failures += 1;
                    reviews.push(NewReview {
                        object: block.indicator.clone(),
                        proposed_action: json!({
                            "action": "block",
                            "sink": self.policy.sink_id,
                            "targets": [block.indicator.clone()],
                            "rule": "block_failed",
                        }),
                        reason: format!(
                            "the playbook's block failed: {}",
                            block.error.as_deref().unwrap_or("no answer")
                        ),
                    });
                }
            }
            let done: Vec<&(Indicator, String)> =
                targets.iter().filter(|(t, _)| blocks.iter().any(|b| b.done && &b.indicator == t)).collect();
            if self.policy.hunt && !done.is_empty() {
                if let Some(hunter) = &self.hunter {
                    hunt = Some(self.hunt(hunter.as_ref(), &alert.id, &done, now).await?);
                }
            }
        }

        let status = if blocks.iter().any(|b| b.done) || (!dry_run && !already_blocked.is_empty()) {
            CaseStatus::Blocked
        } else if !reviews.is_empty() || (dry_run && !would_block.is_empty()) {
            CaseStatus::Review
        } else if benign > 0 {
            CaseStatus::Closed
        } else {
            CaseStatus::Open
        };
        let summary = json!({
            "alert": alert,
            "objects": objects,
            "blocks": blocks,
            "already_blocked": already_blocked,
            "hunt": hunt,
            "sink": self.policy.sink_id,
            "decided_at": now,
        });
        let (case_id, review_ids) = if dry_run {
            (None, Vec::new())
        } else {
            let (id, review_ids) =
                self.store.record_case(&alert.id, &alert.source_id, now, status, &summary, &reviews).await?;
            (Some(id), review_ids)
        };
        Ok(AlertOutcome {
            alert_id: alert.id.clone(),
            case_id,
            status,
            objects,
            would_block,
            already_blocked,
            blocks,
            hunt,
            review_ids,
        })
    }

    /// VirusTotal's answer, from the cache when fresh; only answers (never errors) are cached.
    async fn reputation_of(
        &self,
        indicator: &Indicator,
        now: i64,
        report: &mut TriageReport,
    ) -> Result<(Result<Reputation, EnrichError>, bool), TriageError> {
        let looked_up =
            self.cached(self.reputation.provider(), indicator, now, || self.reputation.reputation(indicator)).await?;
        if looked_up.1 {
            report.reputation_cache_hits += 1;
        } else {
            report.reputation_lookups += 1;
        }
        Ok(looked_up)
    }

    /// The sandbox's verdict, from the cache when fresh, like [`Self::reputation_of`].
    async fn sandbox_of(
        &self,
        indicator: &Indicator,
        now: i64,
        report: &mut TriageReport,
    ) -> Result<(Result<SandboxReport, EnrichError>, bool), TriageError> {
        let looked_up =
            self.cached(self.sandbox.provider(), indicator, now, || self.sandbox.analyze(indicator)).await?;
        if looked_up.1 {
            report.sandbox_cache_hits += 1;
        } else {
            report.sandbox_submissions += 1;
        }
        Ok(looked_up)
    }

    /// A fresh cached answer of `provider` for `indicator`, or `ask` it and cache a success.
    /// The flag says whether the answer came from the cache. Errors are never cached.
    async fn cached<T, F, Fut>(
        &self,
        provider: &str,
        indicator: &Indicator,
        now: i64,
        ask: F,
    ) -> Result<(Result<T, EnrichError>, bool), TriageError>
    where
        T: Serialize + serde::de::DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, EnrichError>>,
    {
        if let Some(hit) = self.store.cache_get(provider, indicator, now).await? {
            if let Ok(answer) = serde_json::from_str::<T>(&hit.body) {
                return Ok((Ok(answer), true));
            }
        }
        let answer = ask().await;
        if let Ok(found) = &answer {
            self.cache(provider, indicator, found, now).await?;
        }
        Ok((answer, false))
    }

    async fn cache<T: Serialize>(
        &self,
        provider: &str,
        indicator: &Indicator,
        answer: &T,
        now: i64,
    ) -> Result<(), TriageError> {
        match serde_json::to_string(answer) {
            Ok(body) => {
                let expires = now.saturating_add(self.policy.cache_ttl_seconds);
                self.store.cache_put(provider, indicator, &body, now, expires).await?;
            }
            Err(error) => tracing::warn!(%indicator, %error, "cannot encode an enrichment answer for the cache"),
        }
        Ok(())
    }

    /// Adds `targets` to the blocking sink in its batch size, records each confirmed one in
    /// the ledger under the triage's sink id and audits every attempt.
    async fn block(
        &self,
        targets: &[(Indicator, String)],
        actor: &str,
        now: i64,
    ) -> Result<Vec<BlockOutcome>, TriageError> {
        let expires_at = self.policy.block_expiry_seconds.map(|s| now.saturating_add(s));
        let tags = vec![
            "tibridge:triage".to_string(),
            format!("tibridge:risk_level={}", self.policy.risk_level.as_str()),
            format!("tibridge:scan_action={}", self.policy.scan_action.as_str()),
        ];
        let entries: Vec<DesiredEntry> = targets
            .iter()
            .map(|(indicator, provenance)| DesiredEntry {
                indicator: indicator.clone(),
                confidence: None,
                tlp: None,
                expires_at,
                last_seen: Some(now),
                provenance: provenance.clone(),
                tags: tags.clone(),
            })
            .collect();
        let batch = match self.blocker.style() {
            SinkStyle::Incremental { max_batch } => max_batch.max(1),
            SinkStyle::Snapshot => entries.len().max(1),
        };
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut ledger = Vec::new();
        let mut audit = Vec::new();
        for chunk in entries.chunks(batch) {
            let answers = match self.blocker.add(chunk).await {
                Ok(answers) => answers.into_iter().map(Some).collect::<Vec<_>>(),
                Err(error) => {
                    let reason = error.to_string();
                    chunk
                        .iter()
                        .map(|_| Some(ItemOutcome::Failed { reason: reason.clone(), retryable: true }))
                        .collect()
                }
            };
            for (index, entry) in chunk.iter().enumerate() {
                let answer = answers.get(index).cloned().flatten().unwrap_or(ItemOutcome::Failed {
                    reason: "the sink gave no answer for this item".into(),
                    retryable: true,
                });
                let (outcome, response) = match answer {
                    ItemOutcome::Done { remote_id } => {
                        ledger.push(LedgerEntry {
                            indicator: entry.indicator.clone(),
                            remote_id: remote_id.clone(),
                            added_at: now,
                            expires_at,
                        });
                        let response = match &remote_id {
                            Some(id) => format!("done, remote id {id}"),
                            None => "done".to_string(),
                        };
                        (
                            BlockOutcome { indicator: entry.indicator.clone(), done: true, remote_id, error: None },
                            response,
                        )
                    }
                    ItemOutcome::Failed { reason, .. } | ItemOutcome::CapacityFull { reason } => (
                        BlockOutcome {
                            indicator: entry.indicator.clone(),
                            done: false,
                            remote_id: None,
                            error: Some(reason.clone()),
                        },
                        format!("failed: {reason}"),
                    ),
                };
                audit.push(AuditRecord {
                    at: now,
                    actor: actor.to_string(),
                    action: "block".into(),
                    target: self.blocker.id().to_string(),
                    item: entry.indicator.to_string(),
                    reason: entry.provenance.clone(),
                    response,
                });
                outcomes.push(outcome);
            }
        }
        self.store.ledger_add(&self.policy.sink_id, &ledger).await?;
        self.store.audit(&audit).await?;
        Ok(outcomes)
    }

    async fn hunt(
        &self,
        hunter: &dyn Hunter,
        alert_id: &str,
        done: &[&(Indicator, String)],
        now: i64,
    ) -> Result<HuntRecord, TriageError> {
        let report_name = format!("tibridge triage {alert_id}");
        let entries: Vec<BundleEntry> = done
            .iter()
            .map(|(indicator, provenance)| BundleEntry {
                indicator: indicator.clone(),
                name: None,
                description: Some(provenance.clone()),
                confidence: None,
                tlp: None,
                valid_from: now,
                valid_until: self.policy.block_expiry_seconds.map(|s| now.saturating_add(s)),
                labels: vec!["tibridge-triage".into()],
            })
            .collect();
        let options = BundleOptions { created: now, report_name: Some(report_name.clone()), fresh_ids: true };
        let bundle = write_bundle(&entries, &options);
        let outcome = match serde_json::to_vec(&bundle) {
            Ok(bytes) => hunter.hunt(&report_name, bytes).await,
            Err(error) => {
                Err(EnrichError::Unsupported { provider: "stix".into(), what: format!("bundle encoding: {error}") })
            }
        };
        let response = match &outcome {
            Ok(o) => format!(
                "report {} task {} {}{}",
                o.report_id,
                o.task_id.as_deref().unwrap_or("-"),
                o.status,
                match o.is_hit {
                    Some(true) => " (hit)",
                    Some(false) => " (no hit)",
                    None => "",
                }
            ),
            Err(error) => format!("failed: {error}"),
        };
        self.store
            .audit(&[AuditRecord {
                at: now,
                actor: ACTOR.into(),
                action: "hunt".into(),
                target: "vision-one".into(),
                item: report_name.clone(),
                reason: format!("sweep for the {} indicators blocked for alert {alert_id}", done.len()),
                response,
            }])
            .await?;
        Ok(HuntRecord { report_name, outcome })
    }

    async fn pending(&self, id: i64) -> Result<ReviewItem, TriageError> {
        let item = self.store.review_item(id).await?.ok_or(TriageError::NoSuchReview { id })?;
        if item.status != ReviewStatus::Pending {
            return Err(TriageError::AlreadyDecided {
                id,
                status: item.status.as_str(),
                by: item.decided_by.clone().unwrap_or_else(|| "someone".into()),
            });
        }
        Ok(item)
    }

    /// Carries out a pending item's proposed block through the same sink, audits it as
    /// `review:approve`, and marks the item approved. Targets the filters exclude are still
    /// never blocked; a failed block leaves the item pending.
    pub async fn approve(&self, id: i64, by: &str, now: i64) -> Result<ApproveOutcome, TriageError> {
        let item = self.pending(id).await?;
        let proposed: Vec<Indicator> = item
            .proposed_action
            .get("targets")
            .cloned()
            .and_then(|t| serde_json::from_value(t).ok())
            .unwrap_or_default();
        let mut targets = Vec::new();
        let mut withheld = Vec::new();
        for target in proposed {
            match excluded(&target, &self.filters) {
                Some(reason) => withheld.push((target, reason)),
                None => targets
                    .push((target, format!("tibridge review item {id} of case {} approved by {by}", item.case_id))),
            }
        }
        if targets.is_empty() {
            let reason = if withheld.is_empty() {
                "the item proposes no target".to_string()
            } else {
                withheld.iter().map(|(t, r)| format!("{t} is {r}")).collect::<Vec<_>>().join("; ")
            };
            return Err(TriageError::NothingToBlock { id, reason });
        }
        let blocks = self.block(&targets, APPROVE_ACTOR, now).await?;
        let failed: Vec<String> = blocks
            .iter()
            .filter(|b| !b.done)
            .map(|b| format!("{} ({})", b.indicator, b.error.as_deref().unwrap_or("no answer")))
            .collect();
        if !failed.is_empty() {
            return Err(TriageError::BlockFailed {
                id,
                sink_id: self.blocker.id().to_string(),
                failed: failed.join(", "),
            });
        }
        self.store.decide_review(id, ReviewStatus::Approved, by, "approved", now).await?;
        self.store
            .update_case(
                item.case_id,
                CaseStatus::Blocked,
                json!({"at": now, "review_id": id, "approved_by": by, "blocks": blocks}),
                now,
            )
            .await?;
        Ok(ApproveOutcome { review_id: id, case_id: item.case_id, blocks, withheld })
    }

    /// Records that the object is fine: appends it to the allowlist file with the reason as
    /// a comment, audits it as `review:reject`, and marks the item rejected. The running
    /// filters learn the new entry when the configuration is next loaded.
    pub async fn reject(&self, id: i64, by: &str, reason: &str, now: i64) -> Result<(), TriageError> {
        let item = self.pending(id).await?;
        let path = self.policy.allowlist.clone().ok_or(TriageError::NoAllowlist { id })?;
        let reason_line: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let by_line: String = by.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let line = format!(
            "{}  # rejected review item {id} (case {}) by {by_line}: {}",
            item.object.value,
            item.case_id,
            reason_line.trim()
        );
        append_line(&path, &line).map_err(|source| TriageError::Allowlist { id, path: path.clone(), source })?;
        self.store.decide_review(id, ReviewStatus::Rejected, by, reason, now).await?;
        self.store
            .audit(&[AuditRecord {
                at: now,
                actor: REJECT_ACTOR.into(),
                action: "allowlist".into(),
                target: path.display().to_string(),
                item: item.object.to_string(),
                reason: format!("review item {id} rejected by {by}: {reason}"),
                response: "appended".into(),
            }])
            .await?;
        let still_pending =
            self.store.case_reviews(item.case_id).await?.iter().any(|r| r.status == ReviewStatus::Pending);
        let status = match self.store.case(item.case_id).await?.map(|c| c.status) {
            Some(CaseStatus::Blocked) => CaseStatus::Blocked,
            _ if still_pending => CaseStatus::Review,
            _ => CaseStatus::Closed,
        };
        self.store
            .update_case(
                item.case_id,
                status,
                json!({"at": now, "review_id": id, "rejected_by": by, "reason": reason}),
                now,
            )
            .await?;
        Ok(())
    }
}

/// Appends one line, first ending an unterminated last line so the entry is not glued on.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let needs_newline = match std::fs::read(path) {
        Ok(bytes) => bytes.last().is_some_and(|b| *b != b'\n'),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let prefix = if needs_newline { "\n" } else { "" };
    file.write_all(format!("{prefix}{line}\n").as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tibridge_connectors::alert::AlertObject;
    use tibridge_connectors::enrich::SandboxVerdict;
    use tibridge_connectors::sink::SinkError;
    use tibridge_core::{normalize, IndicatorKind};

    const NOW: i64 = 1_800_000_000;

    struct FakeAlerts(Vec<Alert>);

    #[async_trait]
    impl AlertSource for FakeAlerts {
        fn id(&self) -> &str {
            "v1-alerts"
        }
        async fn poll(&self, since: i64, until: i64) -> Result<Vec<Alert>, AlertSourceError> {
            Ok(self.0.iter().filter(|a| a.detected_at >= since && a.detected_at <= until).cloned().collect())
        }
    }

    /// VirusTotal by value: the malicious count, or down when `down`.
    #[derive(Default)]
    struct FakeVt {
        counts: HashMap<String, u32>,
        down: bool,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Enricher for FakeVt {
        fn provider(&self) -> &str {
            "virustotal"
        }
        async fn reputation(&self, indicator: &Indicator) -> Result<Reputation, EnrichError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down {
                return Err(EnrichError::QuotaExceeded { provider: "virustotal".into(), detail: "daily quota".into() });
            }
            let found = self.counts.get(&indicator.value);
            Ok(Reputation {
                provider: "virustotal".into(),
                found: found.is_some(),
                malicious: found.copied().unwrap_or(0),
                suspicious: 0,
                harmless: 60,
                undetected: 10,
                link: None,
            })
        }
    }

    #[derive(Default)]
    struct FakeSandbox {
        verdicts: HashMap<String, (SandboxVerdict, Option<String>)>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Sandbox for FakeSandbox {
        fn provider(&self) -> &str {
            "intezer"
        }
        async fn analyze(&self, indicator: &Indicator) -> Result<SandboxReport, EnrichError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.verdicts.get(&indicator.value) {
                Some((verdict, ip)) => Ok(SandboxReport {
                    provider: "intezer".into(),
                    verdict: *verdict,
                    link: Some("https://analyze.example/url/1".into()),
                    title: None,
                    resolved_ip: ip.clone(),
                    scanned_url: None,
                }),
                None => Err(EnrichError::TimedOut { provider: "intezer".into(), waited_seconds: 60 }),
            }
        }
    }

    #[derive(Default)]
    struct FakeSink {
        added: Mutex<Vec<Indicator>>,
        refuse: Vec<String>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Sink for FakeSink {
        fn id(&self) -> &str {
            "vision-one"
        }
        fn style(&self) -> SinkStyle {
            SinkStyle::Incremental { max_batch: 2 }
        }
        fn describe(&self) -> String {
            "fake Vision One".into()
        }
        async fn add(&self, batch: &[DesiredEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut out = Vec::new();
            for entry in batch {
                if self.refuse.contains(&entry.indicator.value) {
                    out.push(ItemOutcome::Failed { reason: "400 invalid".into(), retryable: false });
                } else {
                    if let Ok(mut added) = self.added.lock() {
                        added.push(entry.indicator.clone());
                    }
                    out.push(ItemOutcome::Done { remote_id: None });
                }
            }
            Ok(out)
        }
    }

    #[derive(Default)]
    struct FakeHunter {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Hunter for FakeHunter {
        async fn hunt(&self, name: &str, bundle: Vec<u8>) -> Result<HuntOutcome, EnrichError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let parsed: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
            assert!(parsed["objects"].as_array().unwrap().iter().any(|o| o["type"] == "report" && o["name"] == name));
            Ok(HuntOutcome {
                report_id: "RPT-1".into(),
                task_id: Some("T-1".into()),
                status: "succeeded".into(),
                is_hit: Some(true),
            })
        }
    }

    fn object(kind: IndicatorKind, value: &str) -> AlertObject {
        AlertObject {
            field: "request".into(),
            vendor_type: kind.as_str().into(),
            raw_value: value.into(),
            indicator: normalize(kind, value).map_err(|e| e.to_string()),
        }
    }

    fn alert(id: &str, objects: Vec<AlertObject>) -> Alert {
        Alert {
            id: id.into(),
            source_id: "v1-alerts".into(),
            detected_at: NOW - 3_600,
            severity: "high".into(),
            title: "C2 callback".into(),
            tactic_ids: vec!["TA0011".into()],
            technique_ids: vec!["T1071".into()],
            entity: Some("host-1".into()),
            objects,
            link: None,
        }
    }

    struct Rig {
        _dir: tempfile::TempDir,
        store: Store,
        vt: Arc<FakeVt>,
        sandbox: Arc<FakeSandbox>,
        sink: Arc<FakeSink>,
        hunter: Arc<FakeHunter>,
        allowlist: PathBuf,
    }

    impl Rig {
        async fn new(vt: FakeVt, sandbox: FakeSandbox, sink: FakeSink) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
            let allowlist = dir.path().join("allowlist.txt");
            Rig {
                _dir: dir,
                store,
                vt: Arc::new(vt),
                sandbox: Arc::new(sandbox),
                sink: Arc::new(sink),
                hunter: Arc::new(FakeHunter::default()),
                allowlist,
            }
        }

        fn playbook(&self, alerts: Vec<Alert>) -> Playbook {
            let policy = TriagePolicy { allowlist: Some(self.allowlist.clone()), ..TriagePolicy::default() };
            Playbook::new(
                self.store.clone(),
                policy,
                Arc::new(FakeAlerts(alerts)),
                self.vt.clone(),
                self.sandbox.clone(),
                self.sink.clone(),
                Some(self.hunter.clone()),
                Filters::default(),
            )
        }
    }

    fn vt(counts: &[(&str, u32)]) -> FakeVt {
        FakeVt { counts: counts.iter().map(|(v, c)| (v.to_string(), *c)).collect(), ..FakeVt::default() }
    }

    fn sandbox(verdicts: &[(&str, SandboxVerdict, Option<&str>)]) -> FakeSandbox {
        FakeSandbox {
            verdicts: verdicts.iter().map(|(v, s, ip)| (v.to_string(), (*s, ip.map(str::to_string)))).collect(),
            ..FakeSandbox::default()
        }
    }

    const BAD_URL: &str = "http://evil.example/gate.php";

    #[tokio::test]
    async fn a_malicious_url_is_blocked_hunted_and_recorded_with_the_rest_reviewed_or_closed() {
        let rig = Rig::new(
            vt(&[(BAD_URL, 9), ("fine.example", 0), ("maybe.example", 2)]),
            sandbox(&[(BAD_URL, SandboxVerdict::Malicious, Some("198.51.100.7"))]),
            FakeSink::default(),
        )
        .await;
        let playbook = rig.playbook(vec![alert(
            "WB-1",
            vec![
                object(IndicatorKind::Url, BAD_URL),
                object(IndicatorKind::Domain, "fine.example"),
                object(IndicatorKind::Domain, "maybe.example"),
                object(IndicatorKind::Domain, "not a domain!"),
            ],
        )]);
        let report = playbook.run_once(NOW).await.unwrap();
        assert_eq!((report.alerts_handled, report.objects_examined, report.blocked), (1, 3, 3));
        assert_eq!((report.benign, report.reviews, report.sandbox_submissions), (1, 1, 1));
        let outcome = &report.alerts[0];
        assert_eq!(outcome.status, CaseStatus::Blocked);
        assert!(outcome.objects[3].skipped.as_deref().unwrap().starts_with("not an indicator"));
        let added = rig.sink.added.lock().unwrap().clone();
        assert_eq!(
            added,
            vec![
                Indicator::from_canonical(IndicatorKind::Url, BAD_URL),
                Indicator::from_canonical(IndicatorKind::Domain, "evil.example"),
                Indicator::from_canonical(IndicatorKind::Ipv4, "198.51.100.7"),
            ]
        );
        // Batches of the sink's size (2): two calls for three targets.
        assert_eq!(rig.sink.calls.load(Ordering::SeqCst), 2);
        let ledger = rig.store.ledger("vision-one-triage").await.unwrap();
        assert_eq!(ledger.len(), 3);
        assert!(ledger.iter().all(|e| e.expires_at == Some(NOW + 30 * 86_400)));
        assert_eq!(rig.hunter.calls.load(Ordering::SeqCst), 1);
        let case = rig.store.case(outcome.case_id.unwrap()).await.unwrap().unwrap();
        assert_eq!(case.status, CaseStatus::Blocked);
        assert_eq!(case.summary["objects"][0]["decided"]["rule"], "sandbox_malicious");
        assert_eq!(case.summary["hunt"]["outcome"]["Ok"]["report_id"], "RPT-1");
        let pending = rig.store.review_items(Some(ReviewStatus::Pending), 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].object.value, "maybe.example");
        let audit = rig.store.audit_log(10).await.unwrap();
        assert_eq!(audit.iter().filter(|r| r.actor == ACTOR && r.action == "block").count(), 3);
        assert_eq!(audit.iter().filter(|r| r.action == "hunt").count(), 1);
    }

    #[tokio::test]
    async fn each_alert_is_handled_exactly_once_across_runs_and_concurrent_playbooks() {
        let rig =
            Rig::new(vt(&[(BAD_URL, 9)]), sandbox(&[(BAD_URL, SandboxVerdict::Malicious, None)]), FakeSink::default())
                .await;
        let alerts = vec![alert("WB-2", vec![object(IndicatorKind::Url, BAD_URL)])];
        let (a, b) = (rig.playbook(alerts.clone()), rig.playbook(alerts.clone()));
        let (ra, rb) = tokio::join!(a.run_once(NOW), b.run_once(NOW));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.alerts_handled + rb.alerts_handled, 1);
        assert_eq!(ra.alerts_skipped + rb.alerts_skipped, 1);
        // A restart: a new playbook on the same store skips it.
        let again = rig.playbook(alerts).run_once(NOW + 60).await.unwrap();
        assert_eq!((again.alerts_seen, again.alerts_handled, again.alerts_skipped), (1, 0, 1));
        assert_eq!(rig.sink.calls.load(Ordering::SeqCst), 1);
        assert_eq!(rig.store.cases(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_enricher_out_of_quota_sends_objects_to_review_and_blocks_nothing() {
        let rig =
            Rig::new(FakeVt { down: true, ..FakeVt::default() }, FakeSandbox::default(), FakeSink::default()).await;
        let playbook = rig.playbook(vec![alert(
            "WB-3",
            vec![object(IndicatorKind::Url, BAD_URL), object(IndicatorKind::Domain, "evil.example")],
        )]);
        let report = playbook.run_once(NOW).await.unwrap();
        assert_eq!((report.reviews, report.blocked), (2, 0));
        assert_eq!(rig.sink.calls.load(Ordering::SeqCst), 0);
        assert_eq!(rig.sandbox.calls.load(Ordering::SeqCst), 0);
        assert_eq!(report.alerts[0].status, CaseStatus::Review);
        let items = rig.store.review_items(Some(ReviewStatus::Pending), 10).await.unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0].reason.contains("quota exceeded"), "{}", items[0].reason);
        assert_eq!(items[0].proposed_action["rule"], "enrichment_error");
        // Errors are not cached: the next run asks again.
        assert_eq!(rig.store.cache_get("virustotal", &items[0].object, NOW).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_cache_saves_lookups_of_the_same_object() {
        let rig =
            Rig::new(vt(&[(BAD_URL, 9)]), sandbox(&[(BAD_URL, SandboxVerdict::Clean, None)]), FakeSink::default())
                .await;
        let alerts = vec![
            alert("WB-4", vec![object(IndicatorKind::Url, BAD_URL)]),
            alert(
                "WB-5",
                vec![object(IndicatorKind::Url, BAD_URL), object(IndicatorKind::Url, "hxxp://evil[.]example/gate.php")],
            ),
        ];
        let report = rig.playbook(alerts).run_once(NOW).await.unwrap();
        assert_eq!(report.reputation_lookups, 1);
        assert_eq!(report.reputation_cache_hits, 1);
        assert_eq!((report.sandbox_submissions, report.sandbox_cache_hits), (1, 1));
        assert_eq!(rig.vt.calls.load(Ordering::SeqCst), 1);
        // The defanged spelling is the same indicator: not examined twice.
        assert!(report.alerts[1].objects[1].skipped.is_some());
        // Sandbox clean: VirusTotal and the sandbox disagree, both cases to review.
        assert_eq!(report.reviews, 2);
        assert_eq!(report.blocked, 0);
    }

    #[tokio::test]
    async fn dry_run_changes_nothing_and_leaves_the_alert_for_a_real_run() {
        let rig =
            Rig::new(vt(&[(BAD_URL, 9)]), sandbox(&[(BAD_URL, SandboxVerdict::Offline, None)]), FakeSink::default())
                .await;
        let alerts =
            vec![alert("WB-6", vec![object(IndicatorKind::Url, BAD_URL), object(IndicatorKind::Ipv4, "203.0.113.50")])];
        let mut playbook = rig.playbook(alerts);
        playbook.set_dry_run(true);
        let report = playbook.run_once(NOW).await.unwrap();
        assert_eq!(report.alerts[0].case_id, None);
        assert_eq!(report.alerts[0].would_block.len(), 3, "{:?}", report.alerts[0].would_block);
        assert_eq!(rig.sink.calls.load(Ordering::SeqCst), 0);
        assert_eq!(rig.hunter.calls.load(Ordering::SeqCst), 0);
        assert!(rig.store.cases(10).await.unwrap().is_empty());
        assert!(!rig.store.alert_handled("WB-6").await.unwrap());
        playbook.set_dry_run(false);
        let report = playbook.run_once(NOW).await.unwrap();
        assert_eq!(report.alerts_handled, 1);
        // Offline URL: URL, domain and the alert's public IP.
        assert_eq!(report.blocked, 3);
        assert_eq!(report.alerts[0].objects[0].decided.as_ref().unwrap().rule.as_str(), "sandbox_offline");
    }

    #[tokio::test]
    async fn a_failed_block_goes_to_review_and_no_hunt_runs_for_it() {
        let rig = Rig::new(
            vt(&[(BAD_URL, 9)]),
            sandbox(&[(BAD_URL, SandboxVerdict::Malicious, None)]),
            FakeSink { refuse: vec![BAD_URL.to_string(), "evil.example".to_string()], ..FakeSink::default() },
        )
        .await;
        let report =
            rig.playbook(vec![alert("WB-7", vec![object(IndicatorKind::Url, BAD_URL)])]).run_once(NOW).await.unwrap();
        assert_eq!((report.blocked, report.block_failures), (0, 2));
        assert_eq!(report.alerts[0].status, CaseStatus::Review);
        assert_eq!(rig.hunter.calls.load(Ordering::SeqCst), 0);
        assert!(rig.store.ledger("vision-one-triage").await.unwrap().is_empty());
        let items = rig.store.review_items(Some(ReviewStatus::Pending), 10).await.unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].proposed_action["rule"], "block_failed");
    }

    #[tokio::test]
    async fn approve_blocks_through_the_sink_and_reject_appends_to_the_allowlist() {
        let rig =
            Rig::new(vt(&[("maybe.example", 2), ("cdn.example", 3)]), FakeSandbox::default(), FakeSink::default())
                .await;
        std::fs::write(&rig.allowlist, "# our allowlist\nexample.org").unwrap();
        let playbook = rig.playbook(vec![alert(
            "WB-8",
            vec![object(IndicatorKind::Domain, "maybe.example"), object(IndicatorKind::Domain, "cdn.example")],
        )]);
        let report = playbook.run_once(NOW).await.unwrap();
        let ids = report.alerts[0].review_ids.clone();
        assert_eq!(ids.len(), 2);

        let approved = playbook.approve(ids[0], "alice", NOW + 10).await.unwrap();
        assert_eq!(approved.blocks.len(), 1);
        assert!(approved.blocks[0].done);
        assert_eq!(
            rig.sink.added.lock().unwrap().clone(),
            vec![Indicator::from_canonical(IndicatorKind::Domain, "maybe.example")]
        );
        assert!(matches!(
            playbook.approve(ids[0], "bob", NOW + 11).await,
            Err(TriageError::AlreadyDecided { status: "approved", .. })
        ));

        playbook.reject(ids[1], "bob", "our CDN\nsecond line", NOW + 20).await.unwrap();
        let text = std::fs::read_to_string(&rig.allowlist).unwrap();
        assert_eq!(
            text,
            format!(
                "# our allowlist\nexample.org\ncdn.example  # rejected review item {} (case {}) by bob: our CDN second line\n",
                ids[1],
                report.alerts[0].case_id.unwrap()
            )
        );
        // The appended line is read back by the allowlist parser with its reason.
        let (list, errors) = tibridge_core::filters::allowlist::Allowlist::parse(&text);
        assert!(errors.is_empty());
        assert!(list
            .matching(&Indicator::from_canonical(IndicatorKind::Domain, "cdn.example"))
            .unwrap()
            .contains("our CDN"));

        let case = rig.store.case(report.alerts[0].case_id.unwrap()).await.unwrap().unwrap();
        assert_eq!(case.status, CaseStatus::Blocked);
        assert_eq!(case.summary["history"].as_array().unwrap().len(), 2);
        let audit = rig.store.audit_log(10).await.unwrap();
        assert!(audit.iter().any(|r| r.actor == APPROVE_ACTOR && r.item == "domain:maybe.example"));
        assert!(audit.iter().any(|r| r.actor == REJECT_ACTOR && r.item == "domain:cdn.example"));
        assert!(matches!(playbook.approve(999, "x", NOW).await, Err(TriageError::NoSuchReview { id: 999 })));
    }

    #[tokio::test]
    async fn a_target_blocked_for_an_earlier_alert_is_not_sent_again() {
        let rig =
            Rig::new(vt(&[(BAD_URL, 9)]), sandbox(&[(BAD_URL, SandboxVerdict::Malicious, None)]), FakeSink::default())
                .await;
        let first = rig.playbook(vec![alert("WB-9", vec![object(IndicatorKind::Url, BAD_URL)])]);
        assert_eq!(first.run_once(NOW).await.unwrap().blocked, 2);
        let later = rig.playbook(vec![alert("WB-10", vec![object(IndicatorKind::Url, BAD_URL)])]);
        let report = later.run_once(NOW + 3_600).await.unwrap();
        assert_eq!(report.blocked, 0);
        assert_eq!(report.alerts[0].already_blocked.len(), 2);
        assert_eq!(report.alerts[0].status, CaseStatus::Blocked);
        assert_eq!(rig.sink.calls.load(Ordering::SeqCst), 1);
        assert_eq!(rig.hunter.calls.load(Ordering::SeqCst), 1);
    }

    /// Measures one pass over many alerts whose objects repeat (run with `--ignored --nocapture`).
    #[tokio::test]
    #[ignore]
    async fn measure_a_pass_over_many_alerts() {
        let counts: Vec<(String, u32)> =
            (0..50).map(|i| (format!("http://c{i}.example/gate"), (i % 10) as u32)).collect();
        let vt = FakeVt { counts: counts.iter().cloned().collect(), ..FakeVt::default() };
        let verdicts = counts
            .iter()
            .map(|(v, _)| (v.clone(), (SandboxVerdict::Malicious, Some("198.51.100.7".to_string()))))
            .collect();
        let rig = Rig::new(vt, FakeSandbox { verdicts, ..FakeSandbox::default() }, FakeSink::default()).await;
        let alerts: Vec<Alert> = (0..2000)
            .map(|i| {
                alert(
                    &format!("A-{i}"),
                    vec![
                        object(IndicatorKind::Url, &format!("http://c{}.example/gate", i % 50)),
                        object(IndicatorKind::Domain, &format!("c{}.example", i % 50)),
                    ],
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let report = rig.playbook(alerts).run_once(NOW).await.unwrap();
        let elapsed = started.elapsed();
        println!(
            "2000 alerts, 4000 objects: {:.2} s ({:.0} alerts/s); VirusTotal calls {} (cache hits {}), sandbox calls {} (cache hits {}); {} blocked, {} reviews",
            elapsed.as_secs_f64(),
            2000.0 / elapsed.as_secs_f64(),
            rig.vt.calls.load(Ordering::SeqCst),
            report.reputation_cache_hits,
            rig.sandbox.calls.load(Ordering::SeqCst),
            report.sandbox_cache_hits,
            report.blocked,
            report.reviews
        );
        assert_eq!(report.alerts_handled, 2000);
        assert_eq!(rig.vt.calls.load(Ordering::SeqCst), 100);
        // 30 malicious URLs, each with its domain and the one resolved IP: blocked once each.
        assert_eq!(report.blocked, 61);
    }
}
