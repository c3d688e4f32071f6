//! Tests of scenario files: flags by name, the timeline and its records, errors that name
//! the line or field, and the committed scenario files.

use std::path::{Path, PathBuf};

use super::*;

/// Writes `text` to a file of its own (tests run in parallel).
fn write(text: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("s{n}.toml");
    let dir = std::env::temp_dir().join(format!("overlay-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn apply(text: &str) -> Result<Experiment, String> {
    let mut exp = Experiment::new(100, 1);
    exp.apply_file(&write(text))?;
    exp.finish()?;
    Ok(exp)
}

#[test]
fn a_scenario_file_sets_flags_by_name_and_a_timeline_that_runs_in_order() {
    let text = r#"
description = "twelve nodes, every kind of step"
[run]
nodes = 12
seed = 4
period-ms = 1000
warmup_rounds = 2
loss-after-boot = true
[[timeline]]
at-ms = 500
action = "crash"
nodes = [3, 4]
[[timeline]]
after = "withdrawn"
action = "restart"
[[timeline]]
after = "converged"
action = "partition"
nodes = [0, 1, 2]
[[timeline]]
after = "withdrawn"
action = "heal"
[[timeline]]
after = "merged"
action = "link-change"
nodes = [5]
peer = 6
cost = 3
[[timeline]]
at-ms = 20000
action = "leave"
nodes = [7]
[[timeline]]
after = "converged"
action = "misbehave"
nodes = [8]
kind = "forge"
[record]
figures = ["delivery_ratio", "scenario_figures"]
"#;
    let exp = apply(text).expect("valid");
    assert_eq!((exp.nodes, exp.seed, exp.warmup_rounds), (12, 4, 2));
    assert_eq!(exp.gossip_period, Duration::from_secs(1));
    assert!(exp.loss_after_boot);
    assert_eq!(exp.timeline.len(), 7);
    let keys = KeyPool::cached(&KeyPool::default_dir(), exp.slots()).expect("key cache");
    let r = run(&exp, &keys);
    let steps = r.scenario_figures["timeline"]
        .as_array()
        .expect("records")
        .clone();
    let field = |i: usize, k: &str| steps[i][k].clone();
    assert_eq!(field(0, "at_ms"), 500);
    assert_eq!(
        field(1, "nodes"),
        json!([3, 4]),
        "a restart brings back the crashed"
    );
    for (i, step) in steps.iter().enumerate().skip(1) {
        if i != 5 {
            assert!(
                step["waited_ms"].is_u64(),
                "step {i} waited in vain: {step}"
            );
        }
        assert!(
            step["at_ms"].as_u64() >= steps[i - 1]["at_ms"].as_u64(),
            "in order"
        );
    }
    assert_eq!(field(5, "at_ms"), 20000);
    assert!(r.routes_match_reference, "{:?}", r.mismatch);
    assert_eq!((r.honest_offenses, r.honest_evictions), (0, 0));
    assert_eq!(
        r.description.as_deref(),
        Some("twelve nodes, every kind of step")
    );
    let mut json = serde_json::to_value(&r).expect("json");
    assert_eq!(
        select(&mut json, exp.figures.as_deref().unwrap_or_default()),
        Ok(())
    );
    let mut kept: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    kept.sort_unstable();
    let expected = [
        "delivery_ratio",
        "description",
        "nodes",
        "scenario_figures",
        "seed",
        "topology",
        "trace_digest",
    ];
    assert_eq!(kept, expected);
    assert_eq!(
        run(&exp, &keys).trace_digest,
        r.trace_digest,
        "same file, same run"
    );
    let mut again = serde_json::to_value(&r).expect("json");
    assert_eq!(
        select(&mut again, &["no_such".into()]),
        Err("no such figures: no_such".into())
    );
}

#[test]
fn bad_scenario_files_are_named_with_the_line_or_field_at_fault() {
    let err = |text: &str| apply(text).unwrap_err();
    let e = err("[run]\nnodes = 10\nbogus = 3\n");
    assert!(e.ends_with(".toml: run.bogus: no such setting"), "{e}");
    let e = err("[run]\nnodes = \"ten\"\n");
    assert!(
        e.ends_with(".toml: run.nodes: --nodes: invalid digit found in string"),
        "{e}"
    );
    let e = err("[run]\nnodes = 10\n\n[[timeline]]\naction = \"explode\"\n");
    assert!(
        e.contains(".toml: line 5: unknown variant `explode`"),
        "{e}"
    );
    let e = err("[[timeline]]\naction = \"crash\"\n");
    assert!(
        e.ends_with(".toml: timeline[0]: needs nodes, names or fraction"),
        "{e}"
    );
    let e = err("[[timeline]]\naction = \"loss\"\nloss = 2.0\n");
    assert!(
        e.ends_with(".toml: timeline[0]: needs loss (0 to 1)"),
        "{e}"
    );
    let e = err("[[timeline]]\naction = \"misbehave\"\nnodes = [1]\nkind = \"dance\"\n");
    assert!(e.contains("timeline[0]: kind Some(\"dance\")"), "{e}");
    let e = err("[run]\nscenario-file = \"x.toml\"\n");
    assert!(
        e.ends_with("run.scenario-file: a scenario file cannot name another"),
        "{e}"
    );
    let e = err("[run]\ntopology = \"missing.json\"\n");
    assert!(e.contains("missing.json: No such file"), "{e}");
    let e = err("nodes = 5\n");
    assert!(e.contains("line 1: unknown field `nodes`"), "{e}");
}

#[test]
fn the_committed_scenario_files_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut exp = Experiment::new(100, 1);
            exp.apply_file(&path).expect("reads");
            exp.finish().expect("complete");
            assert!(exp.description.is_some(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen} scenario files");
}
