//! Cluster layouts shared by the demo, the end-to-end tests and the benchmark: the example
//! cluster (fixtures/example, a copy of the shared fixture), generated N-controller
//! layouts, moving a layout onto real addresses, and the routes every live controller
//! must converge to.

// Public in `testing` (the `test-util` feature); the demo uses it either way.
#![cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use overlay_core::best_paths;
use overlay_core::{AsLink, Asn, Route};
use serde_json::{Value, json};

use crate::config::{AsEntry, ConfigFileError, FileConfig, RcEntry, parse_conf};

/// The example cluster's `.conf` files, by name.
pub const EXAMPLE: [(&str, &str); 3] = [
    ("rc1.conf", include_str!("../fixtures/example/rc1.conf")),
    ("rc2.conf", include_str!("../fixtures/example/rc2.conf")),
    ("rc3.conf", include_str!("../fixtures/example/rc3.conf")),
];

/// The example's README, with its table of expected routes.
pub const EXAMPLE_README: &str = include_str!("../fixtures/example/README.md");

/// The example cluster: RC1/AS100, RC2/AS200, RC3/AS300 on 127.0.0.1:8080-8082.
pub fn example() -> Result<Vec<FileConfig>, ConfigFileError> {
    EXAMPLE
        .iter()
        .map(|(name, text)| {
            parse_conf(&Path::new("fixtures/example").join(name), text).map(|(f, _)| f)
        })
        .collect()
}

/// A generated cluster of `n` controllers: RC`i` in AS`100·i`, each linked to its two
/// ring neighbours and (from 4 controllers on) to the one opposite, plus a stub AS
/// `100·i + 1` without a controller; costs and capacities vary. Each controller
/// bootstraps from the next one on the ring. Addresses are placeholders for
/// [`relocate`].
pub fn generated(n: usize) -> Vec<FileConfig> {
    let asn = |i: usize| u32::try_from(100 * (i + 1)).unwrap_or(u32::MAX);
    (0..n)
        .map(|i| {
            let mut file = FileConfig::new(RcEntry {
                id: u32::try_from(i + 1).unwrap_or(u32::MAX),
                autonomous_system_number: asn(i),
                ip: placeholder(i),
            });
            let mut neighbours = vec![(i + 1) % n, (i + n - 1) % n];
            if n >= 4 {
                neighbours.push((i + n / 2) % n);
            }
            neighbours.retain(|&j| j != i);
            neighbours.sort_unstable();
            neighbours.dedup();
            for j in neighbours {
                file.connected_autonomous_systems.push(AsEntry {
                    number: asn(j),
                    link_capacity: [10, 40, 100][(i + j) % 3],
                    cost: 1 + ((i * 7 + j * 3) % 9) as u64,
                });
            }
            file.connected_autonomous_systems.push(AsEntry {
                number: asn(i) + 1,
                link_capacity: 10,
                cost: 1 + (i % 4) as u64,
            });
            if n > 1 {
                let next = (i + 1) % n;
                file.connected_route_controllers.push(RcEntry {
                    id: u32::try_from(next + 1).unwrap_or(u32::MAX),
                    autonomous_system_number: asn(next),
                    ip: placeholder(next),
                });
            }
            file
        })
        .collect()
}

fn placeholder(i: usize) -> String {
    format!("127.0.0.1:{}", 20000 + i)
}

/// Moves controller `i` to `addrs[i]`, rewriting every peer entry that pointed at its old
/// address.
pub fn relocate(files: &mut [FileConfig], addrs: &[SocketAddr]) {
    let moved: BTreeMap<String, String> = files
        .iter()
        .zip(addrs)
        .map(|(f, a)| (f.me.ip.clone(), a.to_string()))
        .collect();
    for (file, addr) in files.iter_mut().zip(addrs) {
        file.me.ip = addr.to_string();
        for peer in &mut file.connected_route_controllers {
            if let Some(new) = moved.get(&peer.ip) {
                peer.ip.clone_from(new);
            }
        }
    }
}

/// The best routes of each controller (`None` where `live[i]` is false), computed from the
/// live controllers' links with the core's public path rule, in the `routes --json` shape
/// of the `routes` array.
pub fn expected_routes(files: &[FileConfig], live: &[bool]) -> Vec<Option<Value>> {
    let mut speakers: BTreeMap<Asn, (u32, Vec<AsLink>)> = BTreeMap::new();
    for (file, _) in files.iter().zip(live).filter(|(_, l)| **l) {
        let asn = Asn(file.me.autonomous_system_number);
        let entry = speakers.entry(asn).or_insert((file.me.id, file.links()));
        if file.me.id < entry.0 {
            *entry = (file.me.id, file.links());
        }
    }
    files
        .iter()
        .zip(live)
        .map(|(file, &alive)| {
            alive.then(|| {
                let routes: Vec<Route> = best_paths(
                    Asn(file.me.autonomous_system_number),
                    speakers
                        .iter()
                        .map(|(asn, (_, links))| (*asn, links.as_slice())),
                )
                .into_values()
                .collect();
                json!(routes)
            })
        })
        .collect()
}

/// One row of the example README's table of expected routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRow {
    /// Source AS.
    pub from: u32,
    /// Destination AS.
    pub to: u32,
    /// Path cost.
    pub cost: u64,
    /// AS path.
    pub path: Vec<u32>,
}

/// The rows `| from | to | cost | path |` of a fixture README.
pub fn fixture_rows(readme: &str) -> Vec<ExpectedRow> {
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let [from, to, cost, path] = cells.as_slice() else {
                return None;
            };
            Some(ExpectedRow {
                from: from.parse().ok()?,
                to: to.parse().ok()?,
                cost: cost.parse().ok()?,
                path: path
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            })
        })
        .collect()
}

/// Rows that a set of `routes --json` answers (one per controller) contradicts, described.
pub fn check_rows(rows: &[ExpectedRow], answers: &[Value]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| {
            let answer = answers.iter().find(|a| a["asn"] == json!(row.from))?;
            let found = answer["routes"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["destination"] == json!(row.to)));
            let ok =
                found.is_some_and(|r| r["cost"] == json!(row.cost) && r["path"] == json!(row.path));
            (!ok).then(|| {
                format!(
                    "AS{} → AS{}: expected cost {} via {:?}, found {}",
                    row.from,
                    row.to,
                    row.cost,
                    row.path,
                    found.map_or("no route".into(), Value::to_string)
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_fixture_table_agrees_with_the_path_rule() {
        let files = example().unwrap();
        let rows = fixture_rows(EXAMPLE_README);
        assert_eq!(rows.len(), 9);
        let answers: Vec<Value> = expected_routes(&files, &[true; 3])
            .into_iter()
            .zip(&files)
            .map(|(routes, f)| json!({"asn": f.me.autonomous_system_number, "routes": routes}))
            .collect();
        assert_eq!(check_rows(&rows, &answers), Vec::<String>::new());
    }

    #[test]
    fn generated_layouts_are_connected_and_relocatable() {
        let mut files = generated(10);
        let addrs: Vec<SocketAddr> = (0..10)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 30000 + i)))
            .collect();
        relocate(&mut files, &addrs);
        assert_eq!(
            files[3].connected_route_controllers[0].ip,
            "127.0.0.1:30004"
        );
        let expected = expected_routes(&files, &[true; 10]);
        // Every controller reaches the other 9 controllers' ASes and all 10 stubs
        // (its own stub directly).
        for routes in expected {
            assert_eq!(routes.unwrap().as_array().unwrap().len(), 19);
        }
    }
}
