//! The shared pool of test identities and the configurations tests build clusters from
//! (the example cluster of `shared/fixtures/example` among them).

use std::sync::OnceLock;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::{
    Action, Addr, AsLink, Asn, ClusterKey, Config, ConnId, Direction, Event, Identity, Node,
    NodeId, Time,
};

/// Identities in the pool.
pub const POOL_SIZE: usize = 8;

/// The shared pool of test identities: deterministic RSA-2048 keys (slots 0 to 7),
/// generated once per process.
pub fn identity(i: usize) -> Identity {
    static POOL: OnceLock<Vec<Identity>> = OnceLock::new();
    POOL.get_or_init(|| {
        (0..POOL_SIZE as u64)
            .map(|i| Identity::generate(&mut ChaCha20Rng::seed_from_u64(1000 + i), 2048).unwrap())
            .collect()
    })[i]
        .clone()
}

/// The test cluster key made of byte `b`.
pub fn cluster_key(b: u8) -> ClusterKey {
    ClusterKey::from_bytes([b; 32])
}

/// A link to `asn`.
pub fn link(asn: u32, capacity: u64, cost: u64) -> AsLink {
    AsLink {
        asn: Asn(asn),
        capacity,
        cost,
    }
}

/// The listen address of slot `i`: `10.0.0.<i+1>:1450`.
pub fn addr(i: usize) -> Addr {
    Addr::from(format!("10.0.0.{}:1450", i + 1))
}

/// A config for slot `i` with a 1 s gossip period.
pub fn config(i: usize, asn: u32, links: Vec<AsLink>, bootstrap: &[usize]) -> Config {
    let mut c = Config::new(
        NodeId(i as u32 + 1),
        Asn(asn),
        addr(i),
        vec![cluster_key(7)],
    );
    c.links = links;
    c.bootstrap = bootstrap.iter().map(|&b| addr(b)).collect();
    c.gossip_period = Duration::from_secs(1);
    c.route_debounce = Some(Duration::ZERO);
    c.reject_threshold = 3;
    c
}

/// The example cluster of shared/fixtures/example: RC1/AS100, RC2/AS200, RC3/AS300.
pub fn example_configs() -> Vec<Config> {
    vec![
        config(
            0,
            100,
            vec![
                link(10, 2, 5),
                link(20, 5, 5),
                link(200, 10, 5),
                link(300, 10, 5),
            ],
            &[1, 2],
        ),
        config(
            1,
            200,
            vec![link(100, 10, 5), link(300, 100, 1), link(30, 10, 2)],
            &[0, 2],
        ),
        config(
            2,
            300,
            vec![link(100, 10, 5), link(200, 100, 1), link(40, 1, 3)],
            &[1],
        ),
    ]
}

/// All bytes sent in `actions`, in order.
fn sent_bytes(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Two fresh nodes, not linked: a dialer (slot 1, AS200) and a listener (slot 0, AS100),
/// and the bytes the dialer sent when its connection (`ConnId(1)`) opened: its hello.
pub fn dialer_and_listener(now: Time) -> (Node, Node, Vec<u8>) {
    let mut dialer = Node::new(
        config(1, 200, vec![], &[0]),
        identity(1),
        [1; 32],
        Time::ZERO,
    )
    .unwrap();
    let listener = Node::new(
        config(0, 100, vec![], &[]),
        identity(0),
        [2; 32],
        Time::ZERO,
    )
    .unwrap();
    dialer.handle(now, Event::Tick);
    let opened = Event::Connected {
        conn: ConnId(1),
        direction: Direction::Outbound,
        remote: addr(0),
    };
    let hello = sent_bytes(&dialer.handle(now, opened));
    (dialer, listener, hello)
}
