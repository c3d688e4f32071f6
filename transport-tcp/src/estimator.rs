//! The cost estimator (`cost_estimator_path`): once per gossip round, a command gets the
//! configured links on stdin (`{"node", "asn", "links": [{"number", "link_capacity",
//! "cost"}]}`) and prints the links to use, as the same JSON array or as raw-format
//! `ASN CAPACITY COST` lines. Changed links go out as one triggered update. A failure (it
//! cannot start, exits non-zero, runs past half the period, or prints links that do not
//! parse or validate) keeps the links in use, and is logged and counted by reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use overlay_core::{AsLink, Asn, Command};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::child::{self, Failure};
use crate::config::{self, AsEntry, Settings, Source};
use crate::counters::Counters;
use crate::driver::Handle;

/// Runs the estimator every gossip period while the daemon runs (re-reading the settings
/// each time, so that a reload changes the command or the period).
pub(crate) async fn run(handle: Handle, settings: Arc<Mutex<Settings>>, counters: Arc<Counters>) {
    loop {
        let (argv, period, input) = {
            let s = settings.lock().unwrap_or_else(|e| e.into_inner());
            let links: Vec<AsEntry> = s.core.links.iter().map(AsEntry::from).collect();
            let input = json!({"node": s.core.node_id, "asn": s.core.asn, "links": links});
            (s.estimator.clone(), s.core.gossip_period, input)
        };
        smol::Timer::after(period).await;
        let Some(argv) = argv else { continue };
        counters.add("cost_estimator_runs_total", String::new());
        match once(&handle, &argv, input.to_string(), period / 2).await {
            Ok(true) => info!(estimator = %argv[0], "the cost estimator changed the links"),
            Ok(false) => debug!(estimator = %argv[0], "the cost estimator kept the links"),
            Err(None) => return,
            Err(Some(failure)) => {
                warn!(estimator = %argv[0], "cost estimator failed, links kept: {failure}");
                let labels = format!("{{reason=\"{}\"}}", failure.label());
                counters.add("cost_estimator_failures_total", labels);
            }
        }
    }
}

/// One run: whether it changed the links; `Err(None)` once the node has stopped.
async fn once(
    handle: &Handle,
    argv: &[String],
    input: String,
    timeout: Duration,
) -> Result<bool, Option<Failure>> {
    let mut command = smol::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    let output = child::run(command, input.into_bytes(), timeout).await?;
    let links = parse(&String::from_utf8_lossy(&output)).map_err(Failure::Invalid)?;
    let current = handle
        .inspect(|v| v.node.config().links.clone())
        .await
        .map_err(|_| None)?;
    if links == current {
        return Ok(false);
    }
    handle
        .checked(Command::SetLinks(links))
        .await
        .map_err(|_| None)?
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    Ok(true)
}

/// The links an estimator printed: a JSON array of `{"number", "link_capacity", "cost"}`,
/// or one `ASN CAPACITY COST` line per link (`;` starts a comment). Printing nothing is
/// a failure (`[]` is no links).
pub(crate) fn parse(text: &str) -> Result<Vec<AsLink>, String> {
    if text.trim().is_empty() {
        return Err("nothing printed (print [] for no links)".into());
    }
    let entries: Vec<AsEntry> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        let source = Source::unnamed("output");
        text.lines()
            .map(|l| l.split(';').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, line)| {
                let words: Vec<&str> = line.split_whitespace().collect();
                config::link_entry(&source, &format!("line {}", i + 1), &words)
                    .map_err(|e| format!("{}: {}", e.field, e.message))
            })
            .collect::<Result<_, _>>()?
    };
    Ok(entries
        .iter()
        .map(|e| AsLink {
            asn: Asn(e.number),
            capacity: e.link_capacity,
            cost: e.cost,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_output_formats_parse_and_nonsense_does_not() {
        let link = |asn, capacity, cost| AsLink {
            asn: Asn(asn),
            capacity,
            cost,
        };
        let json = r#"[{"number": 200, "link_capacity": 10, "cost": 7}]"#;
        assert_eq!(parse(json), Ok(vec![link(200, 10, 7)]));
        let raw = "; measured\n200 10 7\n\n300 100 2 ; fast\n";
        assert_eq!(parse(raw), Ok(vec![link(200, 10, 7), link(300, 100, 2)]));
        assert_eq!(parse("[]"), Ok(vec![]));
        assert!(
            parse(" \n").is_err(),
            "silence is a failure, not an empty table"
        );
        assert!(parse("200 10").unwrap_err().contains("line 1"));
        assert!(parse("200 ten 7").unwrap_err().contains("link_capacity"));
        assert!(parse(r#"[{"number": 200}]"#).is_err());
    }
}
