//! How dissemination settles round by round after a cold start: rumor copies per rumor
//! divided by (N-1), grafts, prunes, duplicates and announcements per rumor, one JSON line
//! per gossip round.
//!
//! `cargo run --release -p overlay-transport-mem --example rounds -- [--nodes 100] [--seed 1]
//!  [--rounds 12] [--dissemination plumtree|flood] [--optimize-hops 1]`

#![forbid(unsafe_code)]

use std::process::ExitCode;

use overlay_transport_mem::KeyPool;
use overlay_transport_mem::dissemination_totals;
use overlay_transport_mem::experiment::{Experiment, build};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut exp = Experiment::new(100, 1);
    let mut rounds = 12u32;
    for pair in args.chunks(2) {
        let (flag, value) = match pair {
            [f, v] => (f.as_str(), v.as_str()),
            _ => {
                eprintln!("rounds: every flag needs a value");
                return ExitCode::from(2);
            }
        };
        let parsed = match flag {
            "--rounds" => value
                .parse()
                .map(|r| rounds = r)
                .map_err(|e| format!("{flag}: {e}")),
            _ => match exp.set_flag(flag, value) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("unknown flag {flag}")),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = parsed {
            eprintln!("rounds: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = exp.finish() {
        eprintln!("rounds: {e}");
        return ExitCode::from(2);
    }
    let keys = match KeyPool::cached(&KeyPool::default_dir(), exp.slots()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("rounds: key cache: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut sim, _) = build(&exp, &keys);
    let slots: Vec<usize> = (0..exp.nodes).collect();
    let n1 = (exp.nodes - 1) as f64;
    let mut before = dissemination_totals(&sim, &slots);
    for round in 0..rounds {
        sim.run_for(exp.gossip_period);
        let after = dissemination_totals(&sim, &slots);
        let counted = after.since(&before);
        let rumors = counted.originated.max(1) as f64;
        let per = |count: u64| count as f64 / rumors;
        println!(
            "{}",
            json!({
                "round": round,
                "rumors": rumors,
                "copies_per_rumor_per_n1": per(counted.copies) / n1,
                "grafts_per_rumor": per(counted.grafts),
                "prunes_per_rumor": per(counted.prunes),
                "duplicates_per_rumor": per(counted.duplicates),
                "announcements_per_rumor": per(counted.announcements),
            })
        );
        before = after;
    }
    ExitCode::SUCCESS
}
