//! Fault injection, compiled only with the `chaos` cargo feature (off by default, never in
//! release artifacts): `overlay-network daemon --misbehave MODE` turns this controller into
//! a Byzantine member. Four times per gossip period it attacks every direct peer through
//! the core's fault-injection hooks (`Node::inject`, `Node::inject_sealed`,
//! `Node::sign_rumor`); everything else about it stays honest, and honest controllers need
//! no special code to deal with it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use overlay_core::testing::sign_rumor;
use overlay_core::wire::{
    Announcement, Digest, LinkMessage, RumorBody, RumorContent, SignedRumor, to_json,
};
use overlay_core::{
    Action, AsLink, Asn, ConnId, Identity, Member, MemberState, Node, NodeId, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use serde_json::value::RawValue;
use smol::{Task, Timer};
use tracing::{debug, info, warn};

use crate::driver::Handle;
use crate::keys::{self, KeyError};

/// Bad messages sent to each peer per attack (forge, replay, garbage).
const BURST: usize = 3;
/// Attacks per gossip period.
const ATTACKS_PER_PERIOD: u32 = 4;

/// How a misbehaving controller attacks its direct peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Another member's advertisement with zero-cost links and a fresh sequence number,
    /// under that member's old signature: an invalid origin signature (`bad_signature`).
    Forge,
    /// Advertisements claiming another live member's id, validly signed with this
    /// controller's own key (`impersonation`: a key may sign for its own id only).
    Impersonate,
    /// Its own first advertisement, re-sent after the newest one (`replay`).
    Replay,
    /// Validly signed advertisements of its own at eight times the per-origin rate limit
    /// (`rate_limited` beyond it).
    Flood,
    /// Random bytes sealed on the link: they pass hop authentication and fail to parse
    /// (`malformed`).
    Garbage,
    /// One signed, well-formed accusation of every other member (one accuser never
    /// reaches a quorum of 2).
    Accuse,
    /// Advertisements of a second identity (a fresh key, the unbound id 0, lower than
    /// every real id) claiming another member's AS with a zero-cost link to AS 64999
    /// (accepted as a member, but the AS stays its first live claimant's: no route
    /// changes, nobody blamed).
    Hijack,
    /// Two accusations of every other member under unbound ids, signed with a fresh key
    /// (`not_member`: ignored, no quorum, nobody blamed).
    SybilAccuse,
    /// Every advertisement it holds relayed again with the unsigned age set to the
    /// maximum, and those of members gone since relayed with age 0 (lifetimes run from
    /// the signed issue time: `untimely` or duplicates, nobody blamed).
    Age,
    /// Asks to be lazy for every origin, then announces every rumor it holds with hop
    /// count 0 (tree optimisation trusts it once per origin at most; nobody blamed).
    Hops,
    /// Its own advertisement padded with 8 KiB of blanks under a valid signature
    /// (`violation`).
    Pad,
    /// Empty digests asking for a reply, and announcements of 1024 made-up rumors (`busy`
    /// past the request budget of 4 × `max_members` ids per link and round: not answered,
    /// not blamed).
    Amplify,
}

/// The unbound node id a `hijack` claims (lower than every real id).
const SYBIL_ID: NodeId = NodeId(0);
/// The made-up AS a hijacked AS is given a zero-cost link to.
pub(crate) const HIJACK_AS: Asn = Asn(64_999);
/// The first unbound id of `sybil-accuse`'s accusers.
const SYBIL_ACCUSERS: u32 = 1_000_000_000;

/// Starts attacking through `handle` (with `identity`, the node's own key, for
/// impersonation); the task ends when the node stops.
pub(crate) fn spawn(handle: Handle, mode: Mode, identity: Identity) -> Result<Task<()>, KeyError> {
    let attacker = Attacker::new(mode, identity, keys::os_rng()?);
    warn!(
        ?mode,
        "CHAOS BUILD: this controller misbehaves on purpose (--misbehave); never run it in production"
    );
    Ok(smol::spawn(run(handle, attacker)))
}

async fn run(handle: Handle, mut attacker: Attacker) {
    let Ok(period) = handle.inspect(|v| v.node.config().gossip_period).await else {
        return;
    };
    let interval = (period / ATTACKS_PER_PERIOD).max(Duration::from_millis(10));
    loop {
        Timer::after(interval).await;
        let attack = handle.tamper(move |node, now| {
            let actions = attacker.attack(node, now);
            (actions, attacker)
        });
        match attack.await {
            Ok(next) => attacker = next,
            Err(_) => return,
        }
    }
}

/// The state of one misbehaving controller between attacks.
struct Attacker {
    mode: Mode,
    identity: Identity,
    rng: ChaCha20Rng,
    /// Last sequence number used for a rumor this node never stored.
    seq: u64,
    /// The first own advertisement seen (replayed later).
    first: Option<SignedRumor>,
    /// Members already accused.
    accused: BTreeSet<overlay_core::NodeId>,
    /// A second key no member speaks for (`hijack`, `sybil-accuse`).
    sybil: Option<Identity>,
    /// The newest advertisement seen of each member (`age`).
    seen: BTreeMap<NodeId, SignedRumor>,
}

impl Attacker {
    fn new(mode: Mode, identity: Identity, rng: ChaCha20Rng) -> Self {
        Attacker {
            mode,
            identity,
            rng,
            seq: 0,
            first: None,
            accused: BTreeSet::new(),
            sybil: None,
            seen: BTreeMap::new(),
        }
    }

    /// A sequence number above every one used so far, by this attacker or by `floor`.
    fn fresh(&mut self, floor: u64) -> u64 {
        self.seq = self.seq.max(floor) + 1;
        self.seq
    }

    /// One attack on every direct peer: the actions that send it.
    fn attack(&mut self, node: &mut Node, now: Time) -> Vec<Action> {
        let peers: Vec<ConnId> = node.peers().iter().map(|p| p.conn).collect();
        if peers.is_empty() {
            return Vec::new();
        }
        let me = node.status().node;
        let victim = node
            .members()
            .into_iter()
            .find(|m| m.node != me && m.state == MemberState::Alive);
        let messages = match self.mode {
            Mode::Hops => self.hops(node),
            Mode::Amplify => amplify(),
            _ => Vec::new(),
        };
        if !messages.is_empty() {
            let mut actions = Vec::new();
            for conn in peers {
                for m in &messages {
                    actions.extend(node.inject(now, conn, m));
                }
            }
            return actions;
        }
        let rumors = match self.mode {
            Mode::Forge => victim.and_then(|v| self.forge(node, &v)),
            Mode::Impersonate => victim.map(|v| self.impersonate(node, now, &v)),
            Mode::Replay => self.replay(node),
            Mode::Flood => Some(self.flood(node)),
            Mode::Accuse => self.accuse(node),
            Mode::Hijack => victim.map(|v| self.hijack(node, now, &v)),
            Mode::SybilAccuse => Some(self.sybil_accuse(node, now)),
            Mode::Age => Some(self.age(node)),
            Mode::Pad => self.pad(node, now),
            Mode::Hops | Mode::Amplify => None,
            Mode::Garbage => {
                return peers
                    .into_iter()
                    .flat_map(|conn| {
                        (0..BURST)
                            .flat_map(|_| {
                                let garbage = self.garbage();
                                node.inject_sealed(now, conn, &garbage)
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect();
            }
        };
        let Some(rumors) = rumors.filter(|r| !r.is_empty()) else {
            return Vec::new();
        };
        debug!(mode = ?self.mode, peers = peers.len(), rumors = rumors.len(), "chaos: attack sent");
        let msg = LinkMessage::Rumors { rumors };
        peers
            .into_iter()
            .flat_map(|conn| node.inject(now, conn, &msg))
            .collect()
    }

    /// `victim`'s advertisement with every link at cost 0 and fresh sequence numbers,
    /// keeping its signature.
    fn forge(&mut self, node: &Node, victim: &Member) -> Option<Vec<SignedRumor>> {
        let advert = node.advert_of(victim.node)?;
        let mut body: RumorBody = serde_json::from_str(advert.body.get()).ok()?;
        if let RumorContent::Advert { links, .. } = &mut body.content {
            *links = links.iter().map(|l| AsLink { cost: 0, ..*l }).collect();
        }
        (0..BURST)
            .map(|_| {
                body.seq = self.fresh(advert.seq);
                Some(SignedRumor {
                    seq: body.seq,
                    body: raw(&to_json(&body))?,
                    ..advert.clone()
                })
            })
            .collect()
    }

    /// An advertisement claiming `victim`'s id (its next sequence number, this node's
    /// address, zero-cost links), signed with this node's own key.
    fn impersonate(&mut self, node: &Node, now: Time, victim: &Member) -> Vec<SignedRumor> {
        let config = node.config();
        let links = config
            .links
            .iter()
            .map(|l| AsLink { cost: 0, ..*l })
            .collect();
        // Always newer than anything of the victim's, so that it is never a duplicate.
        let seq = self.fresh(victim.seq + 1_000_000);
        let body = RumorBody {
            origin: victim.node,
            seq,
            issued_at: now.as_millis(),
            pubkey: self.identity.public().der().to_vec(),
            content: RumorContent::Advert {
                asn: victim.profile.asn,
                addr: config.listen_addr.clone(),
                links,
                cert: None,
                peers: victim.profile.peers.clone(),
            },
        };
        let text = to_json(&body);
        let sig = self.identity.sign(&mut self.rng, &text);
        raw(&text)
            .map(|body| SignedRumor {
                origin: victim.node,
                seq,
                subject: None,
                body,
                sig: sig.into(),
                age_ms: 0,
                hops: 0,
            })
            .into_iter()
            .collect()
    }

    /// The newest own advertisement, then the first one again: older on the same link.
    fn replay(&mut self, node: &Node) -> Option<Vec<SignedRumor>> {
        let me = node.status().node;
        let newest = node.advert_of(me)?;
        let first = self.first.get_or_insert_with(|| newest.clone());
        (first.seq < newest.seq).then(|| {
            std::iter::once(newest)
                .chain(std::iter::repeat_n(first.clone(), BURST))
                .collect()
        })
    }

    /// Fresh, validly signed own advertisements: twice the rate limit per attack.
    fn flood(&mut self, node: &mut Node) -> Vec<SignedRumor> {
        let config = node.config();
        let content = RumorContent::Advert {
            asn: config.asn,
            addr: config.listen_addr.clone(),
            links: config.links.as_slice().into(),
            cert: None,
            peers: Some(peer_ids(node)),
        };
        let count = 2 * config.max_rumors_per_period;
        (0..count)
            .map(|_| {
                let seq = self.fresh(node.status().seq);
                node.sign_rumor(seq, content.clone())
            })
            .collect()
    }

    /// A signed accusation of every live member not accused yet.
    fn accuse(&mut self, node: &mut Node) -> Option<Vec<SignedRumor>> {
        let me = node.status().node;
        let victims: Vec<Member> = node
            .members()
            .into_iter()
            .filter(|m| m.node != me && m.state == MemberState::Alive)
            .filter(|m| !self.accused.contains(&m.node))
            .collect();
        let rumors = victims
            .into_iter()
            .map(|m| {
                info!(accused = %m.node, "chaos: false accusation");
                self.accused.insert(m.node);
                let seq = self.fresh(node.status().seq);
                let content = RumorContent::Accuse {
                    accused: m.node,
                    fingerprint: m.profile.fingerprint.to_hex(),
                    reason: "chaos: false accusation".into(),
                };
                node.sign_rumor(seq, content)
            })
            .collect();
        Some(rumors)
    }

    /// The second key, made on first use.
    fn sybil(&mut self) -> Identity {
        if self.sybil.is_none() {
            self.sybil = Identity::generate(&mut self.rng, 2048).ok();
        }
        self.sybil.clone().unwrap_or_else(|| self.identity.clone())
    }

    /// An advertisement of the unbound id 0, under the second key, claiming `victim`'s AS.
    fn hijack(&mut self, node: &Node, now: Time, victim: &Member) -> Vec<SignedRumor> {
        let sybil = self.sybil();
        let seq = self.fresh(0);
        let content = RumorContent::Advert {
            asn: victim.profile.asn,
            addr: node.config().listen_addr.clone(),
            links: vec![AsLink {
                asn: HIJACK_AS,
                capacity: 1_000_000,
                cost: 0,
            }]
            .into(),
            cert: None,
            peers: victim.profile.peers.clone(),
        };
        info!(claimed = %victim.profile.asn, "chaos: hijack as an unbound lower id");
        vec![sign_rumor(SYBIL_ID, seq, now, &sybil, &mut self.rng, content).envelope(0, 0)]
    }

    /// Two accusations of every other live member, under unbound ids and the second key.
    fn sybil_accuse(&mut self, node: &Node, now: Time) -> Vec<SignedRumor> {
        let sybil = self.sybil();
        let me = node.status().node;
        let victims: Vec<Member> = node
            .members()
            .into_iter()
            .filter(|m| m.node != me && m.state == MemberState::Alive)
            .collect();
        let mut rumors = Vec::new();
        for m in victims {
            for accuser in [SYBIL_ACCUSERS, SYBIL_ACCUSERS + 1] {
                let seq = self.fresh(0);
                let content = RumorContent::Accuse {
                    accused: m.node,
                    fingerprint: m.profile.fingerprint.to_hex(),
                    reason: "chaos: sybil accusation".into(),
                };
                let signed = sign_rumor(NodeId(accuser), seq, now, &sybil, &mut self.rng, content);
                rumors.push(signed.envelope(0, 0));
            }
        }
        rumors
    }

    /// Every advertisement held, aged to the maximum; those of members gone, aged 0.
    fn age(&mut self, node: &Node) -> Vec<SignedRumor> {
        let me = node.status().node;
        let mut alive = BTreeSet::new();
        for m in node.members().into_iter().filter(|m| m.node != me) {
            if m.state == MemberState::Alive {
                alive.insert(m.node);
            }
            if let Some(advert) = node.advert_of(m.node) {
                self.seen.insert(m.node, advert);
            }
        }
        info!(adverts = self.seen.len(), "chaos: ages rewritten");
        self.seen
            .iter()
            .map(|(id, advert)| SignedRumor {
                age_ms: if alive.contains(id) { u64::MAX } else { 0 },
                ..advert.clone()
            })
            .collect()
    }

    /// A prune of every origin, then every held advertisement announced at hop count 0.
    fn hops(&mut self, node: &Node) -> Vec<LinkMessage> {
        let me = node.status().node;
        let members: Vec<Member> = node
            .members()
            .into_iter()
            .filter(|m| m.node != me)
            .collect();
        let ids: Vec<Announcement> = members
            .iter()
            .filter_map(|m| node.advert_of(m.node))
            .map(|r| Announcement(r.origin, None, r.seq, 0))
            .collect();
        info!(announced = ids.len(), "chaos: hop count 0 announced");
        vec![
            LinkMessage::Prune {
                origins: members.iter().map(|m| m.node).collect(),
            },
            LinkMessage::IHave { ids },
        ]
    }

    /// Its own advertisement, 8 KiB of blanks before the body's closing brace, signed.
    fn pad(&mut self, node: &Node, now: Time) -> Option<Vec<SignedRumor>> {
        let config = node.config();
        let me = node.status().node;
        let seq = self.fresh(node.status().seq);
        let body = RumorBody {
            origin: me,
            seq,
            issued_at: now.as_millis(),
            pubkey: self.identity.public().der().to_vec(),
            content: RumorContent::Advert {
                asn: config.asn,
                addr: config.listen_addr.clone(),
                links: config.links.as_slice().into(),
                cert: None,
                peers: Some(peer_ids(node)),
            },
        };
        let mut text = to_json(&body);
        let close = text.pop()?;
        text.extend(std::iter::repeat_n(b' ', 8 * 1024));
        text.push(close);
        let sig = self.identity.sign(&mut self.rng, &text);
        Some(vec![SignedRumor {
            origin: me,
            seq,
            subject: None,
            body: raw(&text)?,
            sig: sig.into(),
            age_ms: 0,
            hops: 0,
        }])
    }

    /// 1 to 256 random bytes.
    fn garbage(&mut self) -> Vec<u8> {
        let len = 1 + (self.rng.next_u32() % 256) as usize;
        let mut bytes = vec![0u8; len];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }
}

/// Empty digests asking for a reply, and announcements of made-up rumors.
fn amplify() -> Vec<LinkMessage> {
    let empty = LinkMessage::Digest(Digest {
        after: None,
        upto: None,
        ids: Vec::new(),
        reply: true,
    });
    let mut messages = vec![empty; BURST];
    let made_up = (0..1024)
        .map(|k| Announcement(NodeId(2_000_000_000 + k), None, 1, 1))
        .collect();
    messages.push(LinkMessage::IHave { ids: made_up });
    messages
}

/// JSON text as a raw rumor body.
/// The node ids of `node`'s direct peers, ascending (what its own adverts list).
fn peer_ids(node: &Node) -> Arc<[NodeId]> {
    let mut ids: Vec<NodeId> = node.peers().iter().map(|p| p.node).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into()
}

fn raw(json: &[u8]) -> Option<Arc<RawValue>> {
    let text = String::from_utf8(json.to_vec()).ok()?;
    RawValue::from_string(text).ok().map(Arc::from)
}
