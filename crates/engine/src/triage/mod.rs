//! The C2 triage playbook (DESIGN.md, second job): Vision One detections in, every
//! highlighted object checked on VirusTotal and, when malicious, in the Intezer sandbox;
//! then closed, queued for an analyst, or blocked on the Suspicious Object list and hunted.
//!
//! - [`config`]: the `[triage]` TOML section, validated into a [`TriagePolicy`];
//! - [`policy`]: the pure decision for one object, with the rule that made it;
//! - [`playbook`]: the run (claim once, enrich with a cache, decide, block, hunt, record the
//!   case) and the review queue's approve and reject.
//!
//! Nothing here ever blocks because an enrichment failed, nor blocks what the allowlist or a
//! warninglist covers.

pub mod config;
pub mod playbook;
pub mod policy;

pub use config::{RawTriage, TriageConfigError, TriagePolicy};
pub use playbook::{Playbook, TriageError, TriageReport};
pub use policy::{decide, Decided, Decision, Rule};

use std::sync::Arc;
use tibridge_connectors::intezer::{IntezerConfig, IntezerSandbox};
use tibridge_connectors::virustotal::{VirusTotalConfig, VirusTotalEnricher};
use tibridge_connectors::vision_one::{
    VisionOneAlertConfig, VisionOneAlertSource, VisionOneHunter, VisionOneHunterConfig, VisionOneSink,
    VisionOneSinkConfig,
};
use tibridge_core::policy::Filters;
use tibridge_store::Store;

/// The connector settings the playbook talks through, wherever the configuration keeps them.
#[derive(Debug, Clone)]
pub struct TriageConnectors {
    /// The Vision One detections to triage; the source id is `alert_source_id`.
    pub alert_source_id: String,
    pub alerts: VisionOneAlertConfig,
    pub virustotal: VirusTotalConfig,
    pub intezer: IntezerConfig,
    /// The Suspicious Object list blocks go to (its ledger id is the policy's `sink_id`).
    pub block: VisionOneSinkConfig,
    /// Needed when the policy hunts; without it the playbook blocks but does not hunt.
    pub hunt: Option<VisionOneHunterConfig>,
}

/// A connector that could not be built from its settings (a missing secret, a bad URL).
#[derive(Debug, thiserror::Error)]
#[error("triage {component}: {reason}")]
pub struct BuildError {
    pub component: &'static str,
    pub reason: String,
}

/// Builds the playbook with the real connectors (Vision One, VirusTotal, Intezer).
pub fn build(
    store: Store,
    policy: TriagePolicy,
    connectors: &TriageConnectors,
    filters: Filters,
) -> Result<Playbook, BuildError> {
    let err =
        |component: &'static str| move |e: &dyn std::fmt::Display| BuildError { component, reason: e.to_string() };
    let alerts = VisionOneAlertSource::from_config(connectors.alert_source_id.clone(), &connectors.alerts)
        .map_err(|e| err("alert source")(&e))?;
    let reputation = VirusTotalEnricher::from_config(&connectors.virustotal).map_err(|e| err("virustotal")(&e))?;
    let sandbox = IntezerSandbox::from_config(&connectors.intezer).map_err(|e| err("intezer")(&e))?;
    let blocker =
        VisionOneSink::from_config(policy.sink_id.clone(), &connectors.block).map_err(|e| err("block sink")(&e))?;
    let hunter: Option<Arc<dyn tibridge_connectors::enrich::Hunter>> = match (&connectors.hunt, policy.hunt) {
        (Some(config), true) => Some(Arc::new(
            VisionOneHunter::from_config(format!("{}-hunt", policy.sink_id), config).map_err(|e| err("hunt")(&e))?,
        )),
        _ => None,
    };
    Ok(Playbook::new(
        store,
        policy,
        Arc::new(alerts),
        Arc::new(reputation),
        Arc::new(sandbox),
        Arc::new(blocker),
        hunter,
        filters,
    ))
}
