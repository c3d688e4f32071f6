//! Scenario files: a whole experiment in TOML. `[run]` sets the command line's flags by
//! name (`nodes = 1000` is `--nodes 1000`; a `topology` path is taken relative to the
//! file), `[[timeline]]` lists the faults ([`Step`]), `[record]` names the figures to print.
//!
//! ```toml
//! description = "GARR: the south cut off for a minute, then healed"
//! [run]
//! topology = "../topologies/Garr201201.json"
//! latency = "geo"
//! period-ms = 2000
//! [[timeline]]
//! at-ms = 0
//! action = "partition"
//! names = ["PA-2", "CT", "CZ"]
//! [[timeline]]
//! after = "converged"
//! wait-ms = 60000
//! action = "heal"
//! [record]
//! figures = ["timeline", "route_convergence_ms"]
//! ```

use std::path::Path;

use serde::Deserialize;

use super::timeline::Step;
use super::*;

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ScenarioFile {
    /// What the experiment is for (printed in the report).
    description: Option<String>,
    /// Flags by name.
    #[serde(default)]
    run: toml::Table,
    /// Faults in order.
    #[serde(default)]
    timeline: Vec<Step>,
    /// What to print.
    record: Option<Record>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    figures: Vec<String>,
}

impl Experiment {
    /// Applies the scenario file at `path`: its `[run]` flags (over those set before), its
    /// timeline and its figures. Errors name the file and the line or field at fault.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), String> {
        let file = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
        let parsed: ScenarioFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| crate::topology::line_of(&text, s.start));
            let message = e.message().replace('\n', " ");
            match line {
                Some(line) => format!("{file}: line {line}: {message}"),
                None => format!("{file}: {message}"),
            }
        })?;
        for (key, value) in &parsed.run {
            let flag = format!("--{}", key.replace('_', "-"));
            if flag == "--scenario-file" {
                return Err(format!(
                    "{file}: run.{key}: a scenario file cannot name another"
                ));
            }
            let mut value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Boolean(true) if flag == "--loss-after-boot" => {
                    self.loss_after_boot = true;
                    continue;
                }
                toml::Value::Integer(_) | toml::Value::Float(_) => value.to_string(),
                other => {
                    return Err(format!(
                        "{file}: run.{key}: unexpected {}",
                        other.type_str()
                    ));
                }
            };
            if flag == "--topology" {
                let dir = path.parent().unwrap_or(Path::new("."));
                value = dir.join(&value).display().to_string();
            }
            match self.set_flag(&flag, &value) {
                Ok(true) => {}
                Ok(false) => return Err(format!("{file}: run.{key}: no such setting")),
                Err(e) => return Err(format!("{file}: run.{key}: {e}")),
            }
        }
        for (i, step) in parsed.timeline.iter().enumerate() {
            step.check(&format!("{file}: timeline[{i}]"))?;
        }
        self.timeline = parsed.timeline;
        self.description = parsed.description;
        if let Some(record) = parsed.record {
            self.figures = Some(record.figures);
        }
        Ok(())
    }
}
