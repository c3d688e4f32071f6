//! Test vectors of docs/PROTOCOL.md ("Test vectors"): fixed keys, nonces and a fixed clock
//! give the exact hello bytes, transcript digests, cluster-key proofs, link keys, first
//! sealed frame and nonce-chain step, and a signed rumor. The derived values are computed
//! here from their definitions (HMAC, HKDF, SHA-256, XChaCha20-Poly1305 of RustCrypto), the
//! core must produce the same bytes, and every value must appear in PROTOCOL.md, so that
//! the document and the code cannot drift apart.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use overlay_core::ClusterKey;
use overlay_core::testing::{Proof, Role, Transcript, derive_link_ciphers, sign_rumor};
use overlay_core::wire::{Handshake, Hello, HelloIdentity, RumorContent, to_json};
use overlay_core::{Addr, AsLink, Asn, Identity, NodeId, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

const PROTOCOL: &str = include_str!("../../docs/PROTOCOL.md");

/// The clock of every vector: 2025-12-04T01:39:05.678Z.
const ISSUED_AT: u64 = 1_764_812_345_678;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The test keys of `core/tests/vectors/` (never use them for anything else).
const DIALER_PEM: &str = include_str!("vectors/dialer.pem");
const LISTENER_PEM: &str = include_str!("vectors/listener.pem");

fn key(pem: &str) -> Identity {
    Identity::from_pkcs8_pem(pem).unwrap()
}

/// The hello identity of a test side.
fn side(
    id: &Identity,
    node: u32,
    nonce: u8,
    secret: &StaticSecret,
    cluster: &ClusterKey,
) -> HelloIdentity {
    HelloIdentity {
        version: 1,
        node: NodeId(node),
        asn: Asn(100 * node),
        pubkey: id.public().der().to_vec(),
        nonce: [nonce; 32],
        ephemeral: PublicKey::from(secret).to_bytes(),
        listen: Addr::from(format!("10.0.0.{node}:1450")),
        key_id: cluster.id(),
        issued_at: ISSUED_AT,
        cert: None,
    }
}

/// HMAC-SHA256(cluster key, label ‖ digest), computed from the definition.
fn proof(cluster: &[u8; 32], label: &str, digest: &[u8; 32]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(cluster).unwrap();
    mac.update(label.as_bytes());
    mac.update(digest);
    mac.finalize().into_bytes().into()
}

/// Every vector, named as PROTOCOL.md names it.
fn vectors() -> Vec<(&'static str, String)> {
    let raw_cluster = [7u8; 32];
    let cluster = ClusterKey::from_bytes(raw_cluster);
    let (dialer, listener) = (key(DIALER_PEM), key(LISTENER_PEM));
    let (d_secret, l_secret) = (
        StaticSecret::from([0x11; 32]),
        StaticSecret::from([0x22; 32]),
    );
    let hello = side(&dialer, 1, 0x33, &d_secret, &cluster);
    let welcome = side(&listener, 2, 0x44, &l_secret, &cluster);
    let (peers_l, peers_d) = (vec![Addr::from("10.0.0.3:1450")], Vec::<Addr>::new());
    let mut v = Vec::new();

    let key_id: [u8; 32] = Sha256::new()
        .chain_update(b"overlay-network cluster key id")
        .chain_update(raw_cluster)
        .finalize()
        .into();
    assert_eq!(cluster.id(), hex(&key_id[..8]));
    v.push(("key_id", cluster.id()));

    let h = Transcript::new().hello(&hello).digest();
    let proof_h = proof(&raw_cluster, "overlay-network v1 hello proof", &h);
    assert_eq!(cluster.prove(Proof::Hello, &h), proof_h);
    v.push(("hello transcript", hex(&h)));
    v.push(("proof_h", hex(&proof_h)));
    let hello_json = to_json(&Handshake::Hello(Hello {
        identity: hello.clone(),
        proof: proof_h,
    }));
    v.push(("hello", String::from_utf8(hello_json).unwrap()));

    let mut t = Transcript::new();
    t.hello(&hello).hello(&welcome).addrs(&peers_l);
    let t1 = t.digest();
    let t2 = t.addrs(&peers_d).digest();
    let proof_l = proof(&raw_cluster, "overlay-network v1 welcome proof", &t1);
    let proof_d = proof(&raw_cluster, "overlay-network v1 finish proof", &t2);
    assert_eq!(cluster.prove(Proof::Welcome, &t1), proof_l);
    assert_eq!(cluster.prove(Proof::Finish, &t2), proof_d);
    v.push(("T1", hex(&t1)));
    v.push(("T2", hex(&t2)));
    v.push(("proof_l", hex(&proof_l)));
    v.push(("proof_d", hex(&proof_d)));

    let dh = d_secret
        .diffie_hellman(&PublicKey::from(&l_secret))
        .to_bytes();
    assert_eq!(
        dh,
        l_secret
            .diffie_hellman(&PublicKey::from(&d_secret))
            .to_bytes()
    );
    v.push(("X25519 shared secret", hex(&dh)));
    let hk = Hkdf::<Sha256>::new(Some(&t2), &[raw_cluster, dh].concat());
    let mut d2l_key = [0u8; 32];
    let mut d2l_nonce = [0u8; 24];
    hk.expand(b"dialer to listener key", &mut d2l_key).unwrap();
    hk.expand(b"dialer to listener nonce", &mut d2l_nonce)
        .unwrap();
    v.push(("dialer to listener key", hex(&d2l_key)));
    v.push(("dialer to listener nonce", hex(&d2l_nonce)));

    // The dialer's first frame, "heartbeat", sealed by the core and by the definition.
    let (mut tx, _) = derive_link_ciphers(&cluster, &dh, &t2, Role::Dialer);
    let plain = b"\"heartbeat\"";
    let aead = XChaCha20Poly1305::new(&d2l_key.into());
    let sealed = aead
        .encrypt(&XNonce::from(d2l_nonce), plain.as_slice())
        .unwrap();
    let mut frame = (sealed.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&sealed);
    assert_eq!(tx.seal_frame(plain), frame);
    v.push(("first frame", hex(&frame)));
    let next: [u8; 32] = Sha256::new()
        .chain_update(b"overlay-network nonce chain")
        .chain_update(d2l_nonce)
        .chain_update(&sealed[sealed.len() - 16..])
        .finalize()
        .into();
    let next_nonce: [u8; 24] = next[..24].try_into().unwrap();
    v.push(("next nonce", hex(&next_nonce)));
    let second = aead
        .encrypt(&XNonce::from(next_nonce), plain.as_slice())
        .unwrap();
    assert_eq!(
        tx.seal(plain),
        second,
        "the second frame uses the chained nonce"
    );

    let rumor = sign_rumor(
        NodeId(1),
        1,
        Time::from_millis(ISSUED_AT),
        &dialer,
        &mut ChaCha20Rng::from_seed([0; 32]),
        RumorContent::Advert {
            asn: Asn(100),
            addr: Addr::from("10.0.0.1:1450"),
            links: vec![AsLink {
                asn: Asn(200),
                capacity: 10,
                cost: 5,
            }]
            .into(),
            cert: None,
            peers: Some(vec![NodeId(2)].into()),
        },
    );
    let envelope = rumor.envelope(0, 1);
    dialer
        .public()
        .verify(envelope.body.get().as_bytes(), &envelope.sig.decode())
        .unwrap();
    v.push(("rumor", String::from_utf8(to_json(&envelope)).unwrap()));
    v
}

#[test]
fn the_documented_vectors_are_what_the_core_computes() {
    for (name, value) in vectors() {
        println!("{name}: {value}");
    }
    for (name, value) in vectors() {
        assert!(
            PROTOCOL.contains(&value),
            "PROTOCOL.md lacks the {name} vector: {value}"
        );
    }
}
