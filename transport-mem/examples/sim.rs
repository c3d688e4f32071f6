//! Runs one simulated experiment and prints its figures as one JSON object.
//!
//! `cargo run --release -p overlay-transport-mem --example sim -- --nodes 1000 --seed 1
//!  [--loss 0.05] [--loss-mode drop|reset|retransmit] [--loss-after-boot]
//!  [--scenario broadcast|churn|crash|partition|byzantine] [--dissemination plumtree|flood]
//!  [--max-peers 10] [--period-ms 10000] [--warmup-rounds 2] [--settle-rounds 0]
//!  [--optimize-hops 1] [--join-ms 0] [--topology FILE] [--latency random|geo]
//!  [--scenario-file FILE.toml] [--report DIR]`
//!
//! Progress goes to stderr as JSON lines (after the boot and after each warm-up and settle
//! round).
//!
//! RSA-2048 keys come from the on-disk pool (`KeyPool::default_dir()`: `$OVERLAY_KEY_CACHE`,
//! else `$CARGO_TARGET_DIR/overlay-keys`, else `target/overlay-keys`); the first run
//! generates the missing ones.

#![forbid(unsafe_code)]

use std::alloc::System;
use std::process::ExitCode;
use std::time::Instant;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

use overlay_transport_mem::KeyPool;
use overlay_transport_mem::experiment::{Experiment, run_with_progress, select, write_report};

/// Counts allocations, so that the state figures count the live heap.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed.
fn live_heap() -> u64 {
    let s = GLOBAL.stats();
    u64::try_from(s.bytes_allocated.saturating_sub(s.bytes_deallocated)).unwrap_or(0)
}

fn parse(args: &[String]) -> Result<Experiment, String> {
    let mut exp = Experiment::new(100, 1);
    exp.heap_bytes = Some(live_heap);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--loss-after-boot" {
            exp.loss_after_boot = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if !exp.set_flag(flag, value)? {
            return Err(format!("unknown flag {flag}"));
        }
    }
    exp.finish()?;
    Ok(exp)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exp = match parse(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sim: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = KeyPool::default_dir();
    let keygen = Instant::now();
    let keys = match KeyPool::cached(&dir, exp.slots()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sim: key cache {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let keys_seconds = keygen.elapsed().as_secs_f64();
    let report = run_with_progress(&exp, &keys, &mut |line| eprintln!("{line}"));
    let mut json = serde_json::to_value(&report).unwrap_or_default();
    json["keys_seconds"] = keys_seconds.into();
    json["key_cache"] = dir.display().to_string().into();
    let selected = exp.figures.as_deref().map(|f| select(&mut json, f));
    println!("{json}");
    if let Some(dir) = &exp.report {
        if let Err(e) = write_report(dir, &report, &json) {
            eprintln!("sim: --report {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        eprintln!("sim: wrote {}", dir.join("report.html").display());
    }
    match selected {
        Some(Err(e)) => {
            eprintln!("sim: record.figures: {e}");
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    }
}
