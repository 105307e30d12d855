//! What the end-to-end tests share: running the real binary with `--json`.

use serde_json::Value;
use std::path::Path;

/// Runs `tibridge --config <config> --json <args>`: (exit code, JSON on stdout, stderr).
pub async fn tibridge(config: &Path, args: &[&str]) -> (i32, Value, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tibridge"))
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .output()
        .await
        .expect("run tibridge");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.code().unwrap_or(-1), serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}
