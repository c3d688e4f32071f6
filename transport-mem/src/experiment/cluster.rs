//! The experiment's cluster: its topology (generated, or read from a file), one controller
//! per node that is not a stub (AS links and bootstrap peers from the graph, a place for
//! geographic latency), and the settings every node runs with.

use super::*;

/// Listen address of node `i`.
pub fn addr(i: usize) -> Addr {
    Addr::from(format!("rc{i}.sim:1450"))
}

/// AS of node `i`.
pub fn asn(i: usize) -> Asn {
    Asn(ASN_BASE + i as u32)
}

/// The experiment's cluster: one node per topology node (AS links and bootstrap peers
/// from the graph), each with the experiment's period and peer limit.
pub fn build(exp: &Experiment, keys: &KeyPool) -> (Sim, Topology) {
    let mut rng = ChaCha20Rng::seed_from_u64(mix(exp.seed ^ 0x70b0));
    let topology = match &exp.topology {
        Some(t) => Topology::clone(t),
        None => Topology::barabasi_albert(exp.nodes, exp.attach, &mut rng).random_weights(
            &mut rng,
            1..=10,
            &[10, 100, 1_000, 10_000],
        ),
    };
    let peers = topology.peers();
    let mut params = SimParams::new(exp.seed);
    params.net = exp.net.clone();
    params.threads = exp.threads;
    if exp.loss_after_boot {
        params.net.loss = 0.0;
    }
    params.net.geo_floor = exp.geo_latency.then_some(exp.latency_floor);
    let mut sim = Sim::new(params);
    for i in 0..exp.nodes {
        let mut c = config(exp, i);
        c.links = topology.links(i, asn);
        let mut neighbours = peers.get(i).cloned().unwrap_or_default();
        while neighbours.len() > MAX_BOOTSTRAP {
            neighbours.swap_remove(below(&mut rng, neighbours.len() as u64) as usize);
        }
        c.bootstrap = neighbours.into_iter().map(addr).collect();
        if !exp.join_over.is_zero() {
            let join_at = exp.join_over.as_millis() * i as u128 / exp.nodes.max(1) as u128;
            sim.run_until(Time::from_millis(
                u64::try_from(join_at).unwrap_or(u64::MAX),
            ));
        }
        // Configs built here are valid by construction.
        let slot = sim
            .add(c, keys.get(i))
            .unwrap_or_else(|e| unreachable!("config: {e}"));
        sim.place(slot, topology.site(i).and_then(|s| s.position));
    }
    (sim, topology)
}

pub(super) fn config(exp: &Experiment, i: usize) -> Config {
    let mut c = Config::new(
        NodeId(i as u32 + 1),
        asn(i),
        addr(i),
        vec![ClusterKey::from_bytes(*b"overlay-network simulated key 01")],
    );
    c.gossip_period = exp.gossip_period;
    if let Some(refresh) = exp.advert_refresh {
        c.advert_refresh = refresh;
    }
    c.max_peers = exp.max_peers;
    c.dissemination = exp.dissemination;
    c.optimize_hops = exp.optimize_hops;
    if let Some(fanout) = exp.eager_fanout {
        c.eager_fanout = fanout;
    }
    c
}
