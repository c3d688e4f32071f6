//! This node's own advertisement: its direct peers, when a change of them is advertised
//! (the hold-downs of `advertising`), a peer lost to a transport failure redialed and
//! expected back, and signing the advert.

use super::*;

impl Node {
    /// A link to `peer` closed. Lost to a transport failure (a reset, hop-authentication
    /// failures, a heartbeat timeout), the peer is redialed at once and expected back
    /// for a moment before its loss is advertised.
    pub(super) fn peer_down(&mut self, conn: ConnId, peer: PeerInfo, reason: CloseReason) {
        let transport = matches!(
            reason,
            CloseReason::Lost | CloseReason::HopAuthFailures | CloseReason::HeartbeatTimeout
        );
        let node = peer.node;
        self.out
            .notify(Notification::PeerDown { conn, node, reason });
        if transport && !self.left {
            self.adverts.expect(self.now, node, peer.listen.clone());
            self.swarm
                .reconnect(&peer.listen, self.now, &mut self.rng, &mut self.out);
        }
        self.peers_changed();
    }

    /// This node's direct peers, by id, ascending.
    pub(super) fn current_peers(&self) -> Arc<[NodeId]> {
        let mut peers: Vec<NodeId> = self.swarm.links().map(|(_, p)| p.node).collect();
        peers.sort_unstable();
        peers.dedup();
        peers.into()
    }

    /// The direct peers changed: advertise them after the hold-down.
    pub(super) fn peers_changed(&mut self) {
        let peers = self.current_peers();
        if let Some(at) = self.adverts.changed(self.now, &peers) {
            self.scheduler.set_earliest(Timer::Advertise, at);
        }
    }

    /// Signs and floods a fresh advertisement of own links (when the signing pace allows;
    /// otherwise one advertisement of the links then in effect waits for it).
    pub(super) fn advertise(&mut self) {
        if !self.gossip.may_sign(self.now) {
            self.unsigned.advert = true;
            self.wait_to_sign();
            return;
        }
        self.unsigned.advert = false;
        let peers = self.current_peers();
        let content = RumorContent::Advert {
            asn: self.config.asn,
            addr: self.config.listen_addr.clone(),
            links: self.config.links.as_slice().into(),
            cert: self.config.certificate.as_ref().map(CertificateText::from),
            peers: Some(Arc::clone(&peers)),
        };
        let admitted = self
            .gossip
            .originate(self.now, &self.identity, &mut self.rng, content);
        self.adverts.signed(self.now, Arc::clone(&peers));
        // The own record, from the advertisement's profile like every other member's.
        self.routing.apply(&admitted);
        let key = admitted.body.id().key();
        self.broadcast
            .spread(self.now, &self.gossip, &key, (None, None), &mut self.rng);
    }
}
