//! Misbehaving members: the messages a Byzantine controller sends its direct peers, built
//! with the core's fault-injection hooks (`Node::sign_rumor`, sealed by `Node::inject`).
//! Forged rumors keep an old signature over a changed body; replays re-send an older
//! rumor; floods exceed the per-origin rate; impersonation claims another origin.

use std::sync::Arc;

use overlay_core::wire::{LinkMessage, RumorBody, RumorContent, SignedRumor};
use overlay_core::{AsLink, Node, NodeId};
use serde::Serialize;
use serde_json::value::RawValue;

/// How a misbehaving member attacks each of its direct peers, once per interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Misbehavior {
    /// Its own advertisement with a changed body (zero costs, a fresh sequence number)
    /// under the old signature.
    Forge,
    /// A newer advertisement of its own, then an older one again on the same links.
    Replay,
    /// A batch of validly self-signed advertisements, three times the rate limit.
    Flood,
    /// A rumor whose body and envelope claim another member as origin.
    Impersonate(NodeId),
    /// The last encrypted frame of each link sent again (breaks the hop chain).
    ReplayFrames,
}

/// The attack of one interval: the rumor batch to seal to every peer, and the
/// `(origin, seq)` pairs in it that their origin never signed.
pub(crate) struct Attack {
    pub msg: LinkMessage,
    pub forged: Vec<(NodeId, u64)>,
}

/// Builds this interval's attack for `node`; `counter` makes sequence numbers fresh and
/// `old` is an earlier advertisement of the node (for replays). `None` when there is
/// nothing to send (or the attack is on frames, handled by the simulator).
pub(crate) fn attack(
    node: &mut Node,
    how: Misbehavior,
    old: Option<&SignedRumor>,
    counter: &mut u64,
) -> Option<Attack> {
    let me = node.status().node;
    *counter += 1;
    let fresh = node.status().seq + 1_000_000 + *counter * 100;
    let rumors = match how {
        Misbehavior::Forge => {
            let own = node.advert_of(me)?;
            let forged = rewrite(&own, fresh, |body| {
                if let RumorContent::Advert { links, .. } = &mut body.content {
                    *links = links.iter().map(|l| AsLink { cost: 0, ..*l }).collect();
                }
            })?;
            return Some(Attack {
                forged: vec![(me, fresh)],
                msg: batch(vec![forged]),
            });
        }
        Misbehavior::Replay => {
            // A newer advertisement first (adverts are change-driven: there may be none
            // since `old`), then the old one again on the same links.
            let newer = node.sign_rumor(fresh, own_advert(node));
            vec![newer, old?.clone()]
        }
        Misbehavior::Flood => {
            let content = own_advert(node);
            let n = u64::from(node.config().max_rumors_per_period) * 3;
            (0..n)
                .map(|k| node.sign_rumor(fresh + k, content.clone()))
                .collect()
        }
        Misbehavior::Impersonate(victim) => {
            let signed = node.sign_rumor(fresh, own_advert(node));
            let claimed = rewrite(&signed, fresh, |body| body.origin = victim)?;
            return Some(Attack {
                forged: vec![(victim, fresh)],
                msg: batch(vec![SignedRumor {
                    origin: victim,
                    ..claimed
                }]),
            });
        }
        Misbehavior::ReplayFrames => return None,
    };
    Some(Attack {
        msg: batch(rumors),
        forged: Vec::new(),
    })
}

fn batch(rumors: Vec<SignedRumor>) -> LinkMessage {
    LinkMessage::Rumors { rumors }
}

fn own_advert(node: &Node) -> RumorContent {
    let c = node.config();
    let mut peers: Vec<_> = node.peers().iter().map(|p| p.node).collect();
    peers.sort_unstable();
    RumorContent::Advert {
        asn: c.asn,
        addr: c.listen_addr.clone(),
        links: c.links.as_slice().into(),
        cert: None,
        peers: Some(peers.into()),
    }
}

/// `rumor` with its body changed by `edit` and its sequence number set to `seq` (body and
/// envelope), keeping the original signature.
fn rewrite(
    rumor: &SignedRumor,
    seq: u64,
    edit: impl FnOnce(&mut RumorBody),
) -> Option<SignedRumor> {
    let mut body: RumorBody = serde_json::from_str(rumor.body.get()).ok()?;
    body.seq = seq;
    edit(&mut body);
    let raw: Arc<RawValue> = RawValue::from_string(serde_json::to_string(&body).ok()?)
        .ok()?
        .into();
    Some(SignedRumor {
        seq,
        body: raw,
        ..rumor.clone()
    })
}
