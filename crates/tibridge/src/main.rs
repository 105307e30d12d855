//! The `tibridge` binary: command line, progress display and exit codes. It wires the
//! library crates together and owns the user interface; it decides nothing itself.

mod commands;
mod demo;
mod progress;
mod triage_commands;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Threat intelligence from where it is shared to where it is enforced, kept in sync.
#[derive(Debug, Parser)]
#[command(name = "tibridge", version, about, long_about = None)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = "tibridge.toml", env = "TIBRIDGE_CONFIG")]
    config: PathBuf,
    /// Machine-readable JSON on standard output instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// More detail in logs (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and say what each source and sink would do.
    Check,
    /// Read every source into the catalog, and nothing else.
    Collect,
    /// Read the sources and show what a sync would change, without changing anything.
    Plan,
    /// Read the sources and bring every sink to its desired state.
    Sync {
        /// Show the plan and record it, but change nothing outside.
        #[arg(long)]
        dry_run: bool,
        /// Apply plans the removal guardrail refused.
        #[arg(long)]
        force: bool,
    },
    /// Per source: last read, counts, errors; per sink: entries, last sync.
    Status,
    /// Search the catalog, with provenance and why each sink takes or filters an indicator.
    Indicators {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Print a sink's desired state (or the whole catalog) as STIX, EDL lines or CSV.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The sink whose desired state to export; without it, every active indicator.
        #[arg(long)]
        sink: Option<String>,
    },
    /// Run the whole job with no credentials against the loopback lab: MISP to Apex Central and
    /// Deep Security, then a deletion in MISP reaching both.
    Demo {
        /// Where the demo writes its config, secrets, store and outputs.
        #[arg(long, default_value = "demo-out")]
        dir: PathBuf,
    },
    /// Start the loopback simulators and wait for Ctrl-C.
    Lab {
        /// Lab settings (ports, keys, capacities, faults, MISP data set); defaults otherwise.
        #[arg(long)]
        lab_config: Option<PathBuf>,
        /// Also write a tibridge config (and its secret files) aimed at the lab into this folder.
        #[arg(long)]
        write_config: Option<PathBuf>,
    },
    /// C2 alert triage: `triage`, `cases`, `review`.
    #[command(flatten)]
    Triage(triage_commands::TriageCommand),
    /// Show the most recent entries of the audit log.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Stix,
    Edl,
    Csv,
}

/// Exit codes a script can rely on.
pub mod exit {
    pub const OK: u8 = 0;
    pub const RUNTIME: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const REFUSED: u8 = 3;
}

/// An error carrying the exit code it should end the process with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure { code: exit::RUNTIME, error: error.into() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // sqlx reports slow statements as warnings; a large first ingest is slow by nature.
        0 => "warn,sqlx=error",
        1 => "info,sqlx=error",
        2 => "debug,sqlx=info,hyper=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
