//! Certified identities: with `trusted_cas`, only what an authority certified joins,
//! speaks for an AS, accuses, and stays linked; a certified key that signs for another id
//! or AS is banned and evicted; certificates end, and renewed ones extend, a member's life.

use overlay_core::testing::*;
use overlay_core::wire::{CertBody, Certificate, LinkMessage, RumorContent, SignedRumor};
use overlay_core::{
    Asn, CloseReason, Command, Config, Event, Identity, NodeId, Notification, Time,
    issue_certificate,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The authority's key (no node uses slot 7).
fn authority() -> Identity {
    identity(7)
}

/// A certificate for slot `slot`'s key as id `node` in AS `asn`, valid until `until` ms.
fn cert(slot: usize, node: u32, asn: u32, until: u64) -> Certificate {
    let body = CertBody {
        serial: u64::from(node),
        node: NodeId(node),
        asn: Asn(asn),
        key: identity(slot).fingerprint().to_hex(),
        issuer: String::new(),
        not_before: 0,
        not_after: until,
    };
    issue_certificate(
        &authority(),
        &mut ChaCha20Rng::seed_from_u64(slot as u64),
        body,
    )
}

/// The harness config of slot `i`, certified by the authority until `until` ms.
fn certified(mut c: Config, i: usize, until: u64) -> Config {
    c.trusted_cas = vec![authority().public().clone()];
    c.certificate = Some(cert(i, c.node_id.0, c.asn.0, until));
    c
}

/// Slots 0..n in a star around slot 0, all certified (slot i is id i+1 in AS 100(i+1)).
fn certified_star(n: usize) -> Cluster {
    certified_star_until(&vec![1_000_000; n])
}

/// Like [`certified_star`], slot i's certificate valid until `until[i]` ms.
fn certified_star_until(until: &[u64]) -> Cluster {
    let n = until.len();
    let configs = (0..n)
        .map(|i| {
            let asn = 100 * (i as u32 + 1);
            let links = if i == 0 {
                (1..n).map(|j| link(100 * (j as u32 + 1), 10, 1)).collect()
            } else {
                vec![link(100, 10, 1)]
            };
            let bootstrap: &[usize] = if i == 0 { &[] } else { &[0] };
            certified(config(i, asn, links, bootstrap), i, until[i])
        })
        .collect();
    let mut c = Cluster::new(configs);
    c.drive_for(1_000);
    c
}

fn rejected(c: &Cluster, i: usize, label: &str) -> u64 {
    c.node(i).metrics().rejects.get(label).copied().unwrap_or(0)
}

fn banned(c: &Cluster, i: usize, node: u32) -> bool {
    c.notes(i)
        .any(|n| matches!(n, Notification::PeerBanned { node: b, .. } if b.0 == node))
}

fn is_member(c: &Cluster, i: usize, node: u32) -> bool {
    c.node(i)
        .members()
        .iter()
        .any(|m| m.node.0 == node && m.state == overlay_core::MemberState::Alive)
}

fn advert(signer: usize, node: u32, asn: u32, cert: Option<Certificate>, now: Time) -> SignedRumor {
    overlay_core::testing::sign_rumor(
        NodeId(node),
        10_000 + u64::from(asn),
        now,
        &identity(signer),
        &mut ChaCha20Rng::seed_from_u64(9),
        RumorContent::Advert {
            asn: Asn(asn),
            addr: addr(signer),
            links: vec![link(999, 1000, 1)].into(),
            cert: cert.as_ref().map(Into::into),
            peers: None,
        },
    )
    .envelope(0, 0)
}

fn push(rumor: SignedRumor) -> LinkMessage {
    LinkMessage::Rumors {
        rumors: vec![rumor],
    }
}

#[test]
fn a_certified_cluster_forms_and_routes() {
    let c = certified_star(3);
    assert!(c.linked(0, 1) && c.linked(0, 2));
    assert!(is_member(&c, 1, 3), "members learned through gossip");
    assert!(c.route_table(1).iter().any(|(d, _, _)| *d == 300));
    assert_eq!(rejected(&c, 0, "uncertified"), 0);
}

#[test]
fn a_node_without_a_valid_certificate_for_its_claim_cannot_link() {
    let mut c = certified_star(2);
    // Open-mode dialers (no trust anchors of their own), each showing what it has.
    let mut none = config(2, 300, vec![], &[0]);
    none.certificate = None;
    let mut stolen = config(3, 400, vec![], &[0]);
    stolen.certificate = Some(cert(1, 2, 200, 1_000_000)); // slot 1's certificate
    let mut other_as = config(4, 500, vec![], &[0]);
    other_as.certificate = Some(cert(4, 5, 200, 1_000_000)); // its key, but AS 200
    let mut expired = config(5, 600, vec![], &[0]);
    expired.certificate = Some(cert(5, 6, 600, 500));
    for config in [none, stolen, other_as, expired] {
        c.add(config);
    }
    c.drive_for(2_000);
    for slot in 2..6 {
        assert!(!c.linked(0, slot), "slot {slot} must not link");
    }
    assert!(rejected(&c, 0, "uncertified") >= 4);
    assert!(c.linked(0, 1), "the certified node stays linked");
}

#[test]
fn uncertified_rumors_are_ignored_and_blame_nobody() {
    let mut c = certified_star(3);
    // An advertisement signed by a key the authority never certified, relayed by slot 1.
    c.inject(1, 0, &push(advert(5, 9, 900, None, c.now)));
    // One signed by slot 5 carrying slot 1's certificate.
    c.inject(
        1,
        0,
        &push(advert(5, 9, 901, Some(cert(1, 2, 200, 1_000_000)), c.now)),
    );
    // An accusation signed by an id that is no certified member.
    let accuse = overlay_core::testing::sign_rumor(
        NodeId(9),
        1,
        c.now,
        &identity(5),
        &mut ChaCha20Rng::seed_from_u64(3),
        RumorContent::Accuse {
            accused: NodeId(3),
            fingerprint: identity(2).fingerprint().to_hex(),
            reason: "made up".into(),
        },
    )
    .envelope(0, 0);
    c.inject(1, 0, &push(accuse));
    c.drive_for(500);
    assert!(!is_member(&c, 0, 9));
    assert_eq!(rejected(&c, 0, "uncertified"), 2);
    assert_eq!(rejected(&c, 0, "not_member"), 1);
    assert!(c.linked(0, 1), "the relay is not blamed");
    assert!(!banned(&c, 0, 2));
}

#[test]
fn a_certified_key_signing_for_another_as_is_banned_and_evicted() {
    // Slot 1 is linked to slots 0 and 2; slot 3 hears of it through them.
    let configs = vec![
        certified(config(0, 100, vec![link(200, 10, 1)], &[]), 0, 1_000_000),
        certified(
            config(1, 200, vec![link(100, 10, 1)], &[0, 2]),
            1,
            1_000_000,
        ),
        certified(config(2, 300, vec![link(200, 10, 1)], &[]), 2, 1_000_000),
        certified(config(3, 400, vec![], &[0, 2]), 3, 1_000_000),
    ];
    let mut c = Cluster::new(configs);
    c.drive_for(1_000);
    assert!(c.linked(0, 1) && c.linked(2, 1));
    // Slot 1 (id 2, certified for AS 200) signs, with its valid certificate, a claim to AS
    // 300, and pushes it to both its peers.
    let hijack = advert(1, 2, 300, Some(cert(1, 2, 200, 1_000_000)), c.now);
    c.inject(1, 0, &push(hijack.clone()));
    c.inject(1, 2, &push(hijack));
    c.drive_for(2_000);
    assert!(banned(&c, 0, 2) && banned(&c, 2, 2));
    assert!(!c.linked(0, 1) && !c.linked(2, 1));
    assert!(
        c.notes(3)
            .any(|n| matches!(n, Notification::MemberEvicted { node, .. } if node.0 == 2)),
        "two accusers evict it everywhere"
    );
    assert!(!c.route_table(3).iter().any(|(d, _, _)| *d == 999));
}

#[test]
fn a_member_lives_as_long_as_its_certificate_and_a_renewal_extends_it() {
    // Slots 1 and 2 hold certificates that run out at 8 s; slot 1 renews its own.
    let mut c = certified_star_until(&[1_000_000, 8_000, 8_000]);
    c.drive_for(3_000);
    let renewed = Box::new(cert(1, 2, 200, 1_000_000));
    c.deliver(1, Event::Command(Command::SetCertificate(renewed)));
    // A certificate for another node is refused.
    let foreign = Box::new(cert(2, 3, 300, 1_000_000));
    c.deliver(1, Event::Command(Command::SetCertificate(foreign)));
    c.drive_for(10_000);
    assert!(
        c.notes(1)
            .any(|n| matches!(n, Notification::CommandFailed(_))),
        "a certificate for another key is refused"
    );
    assert!(!is_member(&c, 0, 3), "slot 2 lapsed with its certificate");
    assert!(!c.linked(0, 2));
    assert!(
        c.closes
            .iter()
            .any(|(_, reason)| *reason == CloseReason::CertificateExpired)
    );
    assert!(is_member(&c, 0, 2), "slot 1 renewed in time");
    assert!(c.linked(0, 1));
}
