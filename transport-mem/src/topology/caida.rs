//! CAIDA AS relationships (serial-1 and serial-2): one `as1|as2|rel[|source]` per line,
//! `#` comments. The overlay routes by cost, not by policy, so a relationship only sets a
//! link's weights: provider–customer (`-1`) and siblings (`1`, `2`) are transit links, cost 1
//! and capacity 10 000; peers (`0`) cost 2 with capacity 1 000 (peering is the thinner and
//! less preferred way through). Every AS is a node named `AS<number>`, in order of first
//! appearance.

use std::collections::BTreeMap;

use super::Site;
use super::read::{Fault, Link, Parsed};

/// Weights of a transit (provider–customer, sibling) link.
const TRANSIT: (u64, u64) = (1, 10_000);
/// Weights of a peering link.
const PEERING: (u64, u64) = (2, 1_000);

/// An AS-relationships file.
pub(super) fn parse(text: &str) -> Result<Parsed, Fault> {
    let mut parsed = Parsed::default();
    let mut index: BTreeMap<u32, usize> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("line {}", n + 1);
        let fields: Vec<&str> = line.split('|').collect();
        let [a, b, rel, ..] = fields[..] else {
            return Err(Fault::at(at, "expected as1|as2|rel[|source]"));
        };
        let asn = |f: &str| {
            f.trim()
                .parse::<u32>()
                .map_err(|_| Fault::at(&at, format!("{f:?} is not an AS number")))
        };
        let (cost, capacity) = match rel.trim() {
            "-1" | "1" | "2" => TRANSIT,
            "0" => PEERING,
            other => return Err(Fault::at(&at, format!("unknown relationship {other:?}"))),
        };
        let mut node = |asn: u32| {
            *index.entry(asn).or_insert_with(|| {
                parsed.nodes.push(Site {
                    name: Some(format!("AS{asn}")),
                    ..Site::default()
                });
                parsed.nodes.len() - 1
            })
        };
        let (a, b) = (node(asn(a)?), node(asn(b)?));
        parsed.edges.push(Link {
            a,
            b,
            km: None,
            cost: Some(cost),
            capacity: Some(capacity),
        });
    }
    Ok(parsed)
}
