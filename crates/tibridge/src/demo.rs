//! `tibridge demo` and `tibridge lab`: the whole MISP → Trend Micro job with no credentials
//! and no network, against the loopback simulators.

use crate::commands::{print_applied, print_plans, print_sources};
use crate::{exit, Failure};
use anyhow::Context;
use serde_json::json;
use std::path::Path;
use tibridge_engine::sync::Silent;
use tibridge_engine::{Config, Engine};
use tibridge_lab::tibridge_config::{write_sync_config, LabConfigOptions};
use tibridge_lab::{GeneratedDataset, Lab, LabConfig};

/// The shipped warninglists, when run from a checkout.
fn shipped_warninglists() -> Option<std::path::PathBuf> {
    let candidate = Path::new("data/warninglists");
    candidate.is_dir().then(|| candidate.canonicalize().ok()).flatten()
}

fn demo_lab_config() -> LabConfig {
    let mut config = LabConfig::default();
    config.misp.settings.generate = GeneratedDataset { events: 6, attrs_per_event: 25, seed: 2026 };
    config
}

pub async fn run_demo(dir: &Path, json: bool) -> Result<u8, Failure> {
    let lab_config = demo_lab_config();
    let lab = Lab::start(lab_config.clone()).await.context("cannot start the lab")?;
    let result = demo_steps(&lab, &lab_config, dir, json).await;
    lab.shutdown().await;
    result
}

async fn demo_steps(lab: &Lab, lab_config: &LabConfig, dir: &Path, json: bool) -> Result<u8, Failure> {
    let (Some(misp), Some(apex), Some(ds)) = (&lab.misp, &lab.apex_central, &lab.deep_security) else {
        return Err(anyhow::anyhow!("the demo needs the MISP, Apex Central and Deep Security simulators").into());
    };
    let _ = std::fs::remove_file(dir.join("tibridge.db"));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let options = LabConfigOptions { warninglists: shipped_warninglists(), ..LabConfigOptions::default() };
    let config_path = write_sync_config(lab, lab_config, dir, &options).context("cannot write the demo config")?;
    let say = |text: String| {
        if !json {
            println!("{text}");
        }
    };
    say(format!("== the lab is up: MISP {}, Apex Central {}, Deep Security {}", misp.url, apex.url, ds.url));
    say(format!(
        "== MISP holds {} attributes; config written to {} (secrets as file references)",
        misp.state.attribute_count(),
        config_path.display()
    ));

    let config = Config::load(&config_path).map_err(|e| Failure { code: exit::CONFIG, error: e.into() })?;
    let engine = Engine::open(config).await.context("cannot start")?;

    say("\n== first sync: plan, then apply".into());
    let reports = engine.collect(&Silent).await?;
    let plans = engine.plan().await?;
    let applied = engine.apply(&plans, false, false, &Silent).await?;
    if !json {
        print_sources(&reports);
        print_plans(&plans);
        print_applied(&applied);
    }
    let (udso_before, rules_before) = (apex.state.udso().len(), ds.state.rules().len());
    say(format!(
        "== Apex Central now holds {udso_before} suspicious objects; Deep Security {rules_before} block rules"
    ));

    // Withdraw one SHA-1 and one SHA-256 that reached the sinks, as an analyst would in MISP.
    let apex_ledger = engine.store.ledger("apex").await?;
    let ds_ledger = engine.store.ledger("deep-security").await?;
    let dataset = misp.state.dataset();
    let mut withdrawn = Vec::new();
    for (ledger, kind) in [(&apex_ledger, "sha1"), (&ds_ledger, "sha256")] {
        let pick = dataset.attributes.iter().find(|a| {
            !a.deleted && a.attr_type == kind && ledger.iter().any(|e| e.indicator.value.eq_ignore_ascii_case(&a.value))
        });
        if let Some(attribute) = pick {
            misp.state.soft_delete_attribute(&attribute.uuid).map_err(|e| anyhow::anyhow!("{e}"))?;
            withdrawn.push(format!("{}:{}", attribute.attr_type, attribute.value));
        }
    }
    say(format!("\n== deleted in MISP: {}", withdrawn.join(", ")));

    say("== second sync: the deletion reaches both controls".into());
    let second_reports = engine.collect(&Silent).await?;
    let second_plans = engine.plan().await?;
    let second_applied = engine.apply(&second_plans, false, false, &Silent).await?;
    if !json {
        print_sources(&second_reports);
        print_plans(&second_plans);
        print_applied(&second_applied);
    }
    let (udso_after, rules_after) = (apex.state.udso().len(), ds.state.rules().len());
    say(format!(
        "== Apex Central: {udso_before} -> {udso_after} suspicious objects; Deep Security: {rules_before} -> {rules_after} block rules"
    ));

    // The second job: C2 alert triage on one seeded detection per branch of the playbook.
    let branches = tibridge_lab::scenarios::seed_triage_branches(lab, tibridge_core::timestamp::now() - 3600);
    say(format!("\n== triage: {} Vision One C2 detections seeded, one per branch:", branches.len()));
    for b in &branches {
        say(format!("   {:<22} {}", b.branch, b.url));
    }
    let triage = if engine.config.triage.is_some() {
        let mut playbook = crate::commands::build_playbook(&engine)?;
        if json {
            let report = playbook.run_once(tibridge_core::timestamp::now()).await.map_err(anyhow::Error::from)?;
            serde_json::to_value(&report).unwrap_or_default()
        } else {
            crate::triage_commands::run_triage(&mut playbook, true, false, false).await?;
            println!("\n== the cases, each with its evidence (tibridge cases ID shows one):");
            crate::triage_commands::run_cases(&engine.store, None, 20, false).await?;
            serde_json::Value::Null
        }
    } else {
        serde_json::Value::Null
    };
    say(format!("== every change is in the audit log: tibridge --config {} audit", config_path.display()));
    if json {
        crate::commands::print_json_value(&json!({
            "first": { "sources": reports, "plans": plans, "applied": applied },
            "withdrawn": withdrawn,
            "second": { "sources": second_reports, "plans": second_plans, "applied": second_applied },
            "apex_central": { "before": udso_before, "after": udso_after },
            "deep_security": { "before": rules_before, "after": rules_after },
            "triage": triage,
        }))?;
    }
    engine.store.close().await;
    let failed = applied.iter().chain(&second_applied).any(|r| r.outcome != "applied" && r.outcome != "unchanged");
    Ok(if failed { exit::RUNTIME } else { exit::OK })
}

pub async fn run_lab(lab_config: Option<&Path>, write_config: Option<&Path>) -> Result<u8, Failure> {
    let config: LabConfig = match lab_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text)
                .map_err(|e| Failure { code: exit::CONFIG, error: anyhow::anyhow!("{}: {e}", path.display()) })?
        }
        None => LabConfig::default(),
    };
    let lab = Lab::start(config.clone()).await.context("cannot start the lab")?;
    for (name, url) in lab.urls() {
        println!("{name:>14}  {url}");
    }
    if let Some(dir) = write_config {
        let options = LabConfigOptions { warninglists: shipped_warninglists(), ..LabConfigOptions::default() };
        let path = write_sync_config(&lab, &config, dir, &options).context("cannot write the config")?;
        println!("config for this lab: {}", path.display());
    }
    println!("lab running on loopback; Ctrl-C stops it");
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    lab.shutdown().await;
    Ok(exit::OK)
}
