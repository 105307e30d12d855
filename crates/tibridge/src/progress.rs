//! Progress bars on a terminal, nothing when piped or in `--json` mode.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use tibridge_engine::sync::{Progress, SourceReport};

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars drawn on standard error only when it is a terminal and output is for people.
    pub fn new(json: bool) -> Bars {
        let target = if json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Bars { multi: MultiProgress::with_draw_target(target), bars: Mutex::new(HashMap::new()) }
    }

    fn with_bar(&self, key: &str, make: impl FnOnce() -> ProgressBar, f: impl FnOnce(&ProgressBar)) {
        if let Ok(mut bars) = self.bars.lock() {
            let bar = bars.entry(key.to_string()).or_insert_with(|| self.multi.add(make()));
            f(bar);
        }
    }

    fn finish(&self, key: &str, message: String) {
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(bar) = bars.remove(key) {
                bar.finish_with_message(message);
            }
        }
    }
}

fn spinner(prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>16} {human_pos} observations {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(prefix.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

impl Progress for Bars {
    fn source_started(&self, source_id: &str) {
        self.with_bar(&format!("source:{source_id}"), || spinner(source_id), |_| {});
    }

    fn observations_written(&self, source_id: &str, count: u64) {
        self.with_bar(&format!("source:{source_id}"), || spinner(source_id), |bar| bar.set_position(count));
    }

    fn source_finished(&self, report: &SourceReport) {
        let message = match &report.error {
            Some(e) => format!("failed: {e}"),
            None => format!("done, {} skipped", report.skipped.len()),
        };
        self.finish(&format!("source:{}", report.source_id), message);
    }

    fn apply_started(&self, sink_id: &str, changes: u64) {
        let make = || {
            let bar = ProgressBar::new(changes);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {prefix:>16} {pos}/{len} changes {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(sink_id.to_string());
            bar
        };
        self.with_bar(&format!("sink:{sink_id}"), make, |_| {});
    }

    fn apply_advanced(&self, sink_id: &str, done: u64) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(bar) = bars.get(&format!("sink:{sink_id}")) {
                bar.set_position(done);
            }
        }
    }

    fn apply_finished(&self, sink_id: &str) {
        self.finish(&format!("sink:{sink_id}"), "done".into());
    }
}
