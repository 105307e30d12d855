//! tibridge-lab: loopback simulators of the outside systems tibridge speaks to.
//!
//! Each follows `shared/contracts/` to the letter, is checked by the vendor's official SDK in
//! CI, and binds 127.0.0.1 only: a simulator must never listen on or call another address.
//!
//! Entry point: [`Lab::start`] with a [`LabConfig`] (TOML-friendly; every section optional)
//! starts every enabled simulator on its own port, each wrapped in fault injection, and gives
//! back each one's state (to seed and inspect), fault switch and base URL:
//!
//! ```no_run
//! # async fn demo() -> Result<(), tibridge_lab::LabError> {
//! let lab = tibridge_lab::Lab::start(tibridge_lab::LabConfig::default()).await?;
//! for (name, url) in lab.urls() {
//!     println!("{name:<14} {url}");
//! }
//! if let Some(misp) = &lab.misp {
//!     misp.faults.set(tibridge_lab::FaultConfig { error_5xx_ratio: 0.1, ..Default::default() });
//! }
//! lab.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Each simulator is also usable alone: `misp::router(state)` etc. with [`serve`].

pub mod fault;
pub mod server;

pub mod apex_central;
pub mod deep_security;
pub mod misp;

pub mod intezer;
pub mod virustotal;
pub mod vision_one;

/// A tibridge config aimed at a running lab.
pub mod tibridge_config;

/// Seeded scenarios for the demo and the end-to-end tests.
pub mod scenarios;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use fault::{FaultConfig, FaultHandle, FaultStats};
pub use server::{serve, RunningServer, ServeError};

/// Why the lab could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab: cannot start the {name} simulator: {source}")]
    Serve {
        name: &'static str,
        #[source]
        source: ServeError,
    },
    #[error("lab: cannot load the MISP data set: {0}")]
    Dataset(#[from] misp::DatasetError),
}

/// One simulator's section of the config: whether it runs, where, with which faults, and its
/// own settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig<T> {
    pub enabled: bool,
    /// Port on the lab host; 0 picks a free one.
    pub port: u16,
    /// Faults injected from the start (changeable at runtime through [`Simulator::faults`]).
    pub faults: FaultConfig,
    pub settings: T,
}

impl<T: Default> Default for SimulatorConfig<T> {
    fn default() -> Self {
        SimulatorConfig { enabled: true, port: 0, faults: FaultConfig::default(), settings: T::default() }
    }
}

/// Size and seed of a generated MISP data set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratedDataset {
    pub events: usize,
    pub attrs_per_event: usize,
    pub seed: u64,
}

impl Default for GeneratedDataset {
    fn default() -> Self {
        GeneratedDataset { events: 10, attrs_per_event: 20, seed: 42 }
    }
}

/// Settings of the MISP simulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MispSettings {
    /// The key clients send raw in `Authorization`.
    pub api_key: String,
    /// A file or directory of MISP event JSON; wins over `generate` when set.
    pub dataset_path: Option<PathBuf>,
    /// The generated data set used when no path is given.
    pub generate: GeneratedDataset,
    /// Values `enforceWarninglist` drops.
    pub warninglist: Vec<String>,
}

impl Default for MispSettings {
    fn default() -> Self {
        MispSettings {
            api_key: "lab-misp-key-00000000000000000000000000".into(),
            dataset_path: None,
            generate: GeneratedDataset::default(),
            warninglist: Vec::new(),
        }
    }
}

/// The whole lab. Every section is optional in TOML; `[apex_central] enabled = false` leaves
/// one out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabConfig {
    /// Loopback address every simulator binds (127.0.0.1 or ::1; anything else is refused).
    pub host: IpAddr,
    pub misp: SimulatorConfig<MispSettings>,
    pub apex_central: SimulatorConfig<apex_central::ApexConfig>,
    pub deep_security: SimulatorConfig<deep_security::DeepSecurityConfig>,
    pub vision_one: SimulatorConfig<vision_one::VisionOneConfig>,
    pub virustotal: SimulatorConfig<virustotal::VirusTotalConfig>,
    pub intezer: SimulatorConfig<intezer::IntezerConfig>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            misp: SimulatorConfig::default(),
            apex_central: SimulatorConfig::default(),
            deep_security: SimulatorConfig::default(),
            vision_one: SimulatorConfig::default(),
            virustotal: SimulatorConfig::default(),
            intezer: SimulatorConfig::default(),
        }
    }
}

/// A running simulator: its state, its fault switch, and where clients reach it.
pub struct Simulator<S> {
    pub state: Arc<S>,
    pub faults: FaultHandle,
    pub server: RunningServer,
    /// The base URL a client is configured with (for Deep Security it ends in `/api`).
    pub url: String,
}

impl<S> std::fmt::Debug for Simulator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").field("url", &self.url).field("faults", &self.faults.config()).finish()
    }
}

impl<S> Simulator<S> {
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Every simulator the config enabled, running.
#[derive(Debug)]
pub struct Lab {
    pub misp: Option<Simulator<misp::MispState>>,
    pub apex_central: Option<Simulator<apex_central::ApexState>>,
    pub deep_security: Option<Simulator<deep_security::DeepSecurityState>>,
    pub vision_one: Option<Simulator<vision_one::VisionOneState>>,
    pub virustotal: Option<Simulator<virustotal::VirusTotalState>>,
    pub intezer: Option<Simulator<intezer::IntezerState>>,
}

async fn start_one<S, T>(
    name: &'static str,
    host: IpAddr,
    section: &SimulatorConfig<T>,
    state: Arc<S>,
    router: fn(Arc<S>) -> axum::Router,
    suffix: &str,
) -> Result<Simulator<S>, LabError> {
    let faults = FaultHandle::new(section.faults.clone());
    let server = serve(router(state.clone()), faults.clone(), SocketAddr::new(host, section.port))
        .await
        .map_err(|source| LabError::Serve { name, source })?;
    let url = format!("{}{suffix}", server.base_url());
    Ok(Simulator { state, faults, server, url })
}

impl Lab {
    /// Start every enabled simulator. On an error the ones already started are stopped.
    pub async fn start(config: LabConfig) -> Result<Lab, LabError> {
        let mut lab = Lab {
            misp: None,
            apex_central: None,
            deep_security: None,
            vision_one: None,
            virustotal: None,
            intezer: None,
        };
        let host = config.host;
        if config.misp.enabled {
            let s = &config.misp.settings;
            let data = match &s.dataset_path {
                Some(path) => misp::MispDataset::load_path(path)?,
                None => misp::generate_dataset(s.generate.events, s.generate.attrs_per_event, s.generate.seed),
            };
            let state = misp::MispState::new(data, s.api_key.clone());
            state.set_warninglist(&s.warninglist);
            lab.misp = Some(start_one("MISP", host, &config.misp, state, misp::router, "").await?);
        }
        if config.apex_central.enabled {
            let state = apex_central::ApexState::new(config.apex_central.settings.clone());
            lab.apex_central =
                Some(start_one("Apex Central", host, &config.apex_central, state, apex_central::router, "").await?);
        }
        if config.deep_security.enabled {
            let state = deep_security::DeepSecurityState::new(config.deep_security.settings.clone());
            lab.deep_security = Some(
                start_one("Deep Security", host, &config.deep_security, state, deep_security::router, "/api").await?,
            );
        }
        if config.vision_one.enabled {
            let state = Arc::new(vision_one::VisionOneState::new(config.vision_one.settings.clone()));
            lab.vision_one =
                Some(start_one("Vision One", host, &config.vision_one, state, vision_one::router, "").await?);
        }
        if config.virustotal.enabled {
            let state = Arc::new(virustotal::VirusTotalState::new(config.virustotal.settings.clone()));
            lab.virustotal =
                Some(start_one("VirusTotal", host, &config.virustotal, state, virustotal::router, "").await?);
        }
        if config.intezer.enabled {
            let state = Arc::new(intezer::IntezerState::new(config.intezer.settings.clone()));
            lab.intezer = Some(start_one("Intezer", host, &config.intezer, state, intezer::router, "").await?);
        }
        Ok(lab)
    }

    /// (name, base URL) of every running simulator, in a fixed order, for printing.
    pub fn urls(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(s) = &self.misp {
            out.push(("misp", s.url.clone()));
        }
        if let Some(s) = &self.apex_central {
            out.push(("apex_central", s.url.clone()));
        }
        if let Some(s) = &self.deep_security {
            out.push(("deep_security", s.url.clone()));
        }
        if let Some(s) = &self.vision_one {
            out.push(("vision_one", s.url.clone()));
        }
        if let Some(s) = &self.virustotal {
            out.push(("virustotal", s.url.clone()));
        }
        if let Some(s) = &self.intezer {
            out.push(("intezer", s.url.clone()));
        }
        out
    }

    /// Stop every simulator and wait for their sockets to close.
    pub async fn shutdown(self) {
        if let Some(s) = self.misp {
            s.shutdown().await;
        }
        if let Some(s) = self.apex_central {
            s.shutdown().await;
        }
        if let Some(s) = self.deep_security {
            s.shutdown().await;
        }
        if let Some(s) = self.vision_one {
            s.shutdown().await;
        }
        if let Some(s) = self.virustotal {
            s.shutdown().await;
        }
        if let Some(s) = self.intezer {
            s.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_from_toml_shaped_json_with_every_section_optional() {
        let c: LabConfig = serde_json::from_str(
            r#"{"misp": {"port": 0, "settings": {"generate": {"events": 2, "attrs_per_event": 3, "seed": 1}}},
                "apex_central": {"settings": {"capacity": 5}, "faults": {"latency": "10ms"}},
                "intezer": {"enabled": false}}"#,
        )
        .unwrap();
        assert_eq!(c.apex_central.settings.capacity, 5);
        assert!(!c.intezer.enabled);
        assert!(c.deep_security.enabled);
        assert!(serde_json::from_str::<LabConfig>(r#"{"mips": {}}"#).is_err());
    }

    #[test]
    fn example_toml_config_parses() {
        let text = include_str!("../testdata/lab.toml");
        let c: LabConfig = toml::from_str(text).unwrap();
        assert_eq!(c.deep_security.settings.mode, deep_security::DsMode::C1ws);
        assert_eq!(c.apex_central.faults.latency, std::time::Duration::from_millis(20));
        assert_eq!(c.misp.settings.generate.events, 100);
        assert!(!c.intezer.enabled);
        assert_eq!(toml::from_str::<LabConfig>("").unwrap(), LabConfig::default());
    }

    #[tokio::test]
    async fn starts_everything_on_distinct_loopback_ports() {
        let lab = Lab::start(LabConfig::default()).await.unwrap();
        let urls = lab.urls();
        assert_eq!(urls.len(), 6);
        let mut ports: Vec<&str> = urls.iter().map(|(_, u)| u.as_str()).collect();
        ports.dedup();
        assert_eq!(ports.len(), 6);
        assert!(urls.iter().all(|(_, u)| u.starts_with("http://127.0.0.1:")));
        assert!(lab.deep_security.as_ref().unwrap().url.ends_with("/api"));
        assert_eq!(lab.misp.as_ref().unwrap().state.attribute_count(), 200);
        lab.shutdown().await;

        let mut from_file = LabConfig::default();
        from_file.misp.settings.dataset_path =
            Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/misp_events.json")));
        from_file.vision_one.enabled = false;
        let lab = Lab::start(from_file.clone()).await.unwrap();
        assert_eq!(lab.misp.as_ref().unwrap().state.attribute_count(), 10);
        assert_eq!(lab.urls().len(), 5);
        lab.shutdown().await;
        from_file.misp.settings.dataset_path = Some(PathBuf::from("/nonexistent/misp.json"));
        let err = Lab::start(from_file).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/misp.json"), "{err}");

        let refused = Lab::start(LabConfig { host: "10.1.2.3".parse().unwrap(), ..LabConfig::default() }).await;
        assert!(matches!(refused, Err(LabError::Serve { source: ServeError::NotLoopback(_), .. })));
    }
}
