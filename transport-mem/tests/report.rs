//! The plotted report: a run on a real topology writes one self-contained `report.html`
//! whose every chart headless Chromium (Debian's `/usr/bin/chromium`) lays out with
//! something drawn; sampling for the report leaves the run itself unchanged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use overlay_transport_mem::KeyPool;
use overlay_transport_mem::experiment::{Experiment, run, write_report};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A directory of its own under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("overlay-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The DOM of `file` after its scripts ran in headless Chromium (at most 60 s).
fn rendered(file: &Path, profile: &Path) -> String {
    let out = profile.join("dom.html");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .arg(format!("file://{}", file.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("dom file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.is_some_and(|s| s.success()), "chromium: {status:?}");
    std::fs::read_to_string(out).expect("dom")
}

#[test]
fn a_report_on_a_real_topology_renders_every_chart_in_headless_chromium() {
    let dir = scratch("abilene");
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/Abilene.json");
    let mut exp = Experiment::new(0, 2);
    for (flag, value) in [
        ("--topology", topology.to_str().expect("utf-8")),
        ("--latency", "geo"),
        ("--period-ms", "1000"),
        ("--report", dir.to_str().expect("utf-8")),
    ] {
        assert_eq!(exp.set_flag(flag, value), Ok(true), "{flag}");
    }
    exp.finish().expect("the committed file reads");
    let keys = KeyPool::cached(&KeyPool::default_dir(), exp.slots()).expect("key cache");
    let r = run(&exp, &keys);
    let mut without = exp.clone();
    without.report = None;
    let plain = run(&without, &keys);
    assert_eq!(r.trace_digest, plain.trace_digest, "sampling only observes");
    let s = &r.series;
    assert_eq!(
        s.deliveries.len(),
        10,
        "every other controller received the change"
    );
    assert_eq!(
        s.tree.len(),
        10,
        "each receiver hangs from a parent in the tree"
    );
    assert_eq!(
        (s.places.len(), s.links.len(), s.settled_ms.len()),
        (11, 14, 11)
    );
    assert!(s.rounds.len() >= 3, "{} rounds sampled", s.rounds.len());
    assert!(s.rounds.iter().any(|(_, t)| t.copies > 0));

    let json = serde_json::to_value(&r).expect("json");
    write_report(&dir, &r, &json).expect("written");
    let file = dir.join("report.html");
    let html = std::fs::read_to_string(&file).expect("report.html");
    assert_eq!(html.matches("class=\"chart\"").count(), 5);
    for id in ["delivery", "hops", "rounds", "convergence", "topology"] {
        assert!(
            html.contains(&format!("<svg id=\"{id}\" class=\"chart\"")),
            "{id}"
        );
    }
    assert!(html.contains(&r.trace_digest));
    assert!(html.contains("<tr><th>delivery_ratio</th><td>1.0</td></tr>"));
    assert!(
        !html.contains(" src=") && !html.contains("href=\"http"),
        "self-contained"
    );

    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("OVERLAY_REQUIRE_BROWSER").is_none(),
            "OVERLAY_REQUIRE_BROWSER is set but {CHROMIUM} is missing (apt-get install chromium)"
        );
        eprintln!("SKIPPED the browser half: {CHROMIUM} is missing (apt-get install chromium)");
        return;
    }
    let dom = rendered(&file, &dir);
    let body = dom
        .find("<body")
        .map(|at| &dom[at..at + dom[at..].find('>').unwrap_or(0)]);
    let body = body.expect("a body");
    assert!(body.contains("data-charts=\"5\""), "{body}");
    assert!(
        body.contains("data-rendered=\"5\""),
        "every chart drawn: {body}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
