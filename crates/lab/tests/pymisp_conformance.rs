//! Runs `tests/conformance/pymisp_lab.py` (PyMISP 2.5.34.4) against a lab MISP loaded with
//! `testdata/misp_events.json`, so our reading of the MISP wire format is checked by the
//! official client.
//!
//! Needs `TIBRIDGE_PYTHON_VERIFY=/path/to/venv/bin/python` (a venv with
//! `pip install "pymisp==2.5.34.4"`); without it the test prints a note and passes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use tibridge_lab::misp::{router, MispDataset, MispState};
use tibridge_lab::{serve, FaultHandle};

const KEY: &str = "pymisp-conformance-key-000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymisp_reads_the_lab_misp() {
    let Some(python) = std::env::var_os("TIBRIDGE_PYTHON_VERIFY") else {
        eprintln!("skipped: set TIBRIDGE_PYTHON_VERIFY to a venv python with pymisp==2.5.34.4 to run the PyMISP check");
        return;
    };
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = MispDataset::load_path(&crate_dir.join("testdata/misp_events.json")).expect("test data set loads");
    let state = MispState::new(data, KEY);
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
    let server = serve(router(state.clone()), FaultHandle::default(), addr).await.expect("lab MISP starts");
    let script = crate_dir.join("../../tests/conformance/pymisp_lab.py");
    let url = server.base_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(script).env("LAB_MISP_URL", url).env("LAB_MISP_KEY", KEY).output()
    })
    .await
    .expect("script task")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "PyMISP conformance failed ({}):\n{stdout}\n{stderr}", output.status);
    // The two sightings the script sent arrived as MISP would record them.
    let sightings = state.sightings();
    assert_eq!(sightings.len(), 2, "{sightings:?}");
    assert_eq!(sightings[0].source, "tibridge");
    assert_eq!(sightings[0].date_sighting, 1705312800);
    server.shutdown().await;
}
