//! A man-in-the-middle TCP proxy on 127.0.0.1 for the adversarial tests. It relays the
//! frames (4-byte big-endian length prefix, then the body) between the controllers that
//! dial it and one target controller, and on demand tampers with the stream going to the
//! target once the handshake is over (the dialer's `Hello` and `Finish`, the target's
//! `Welcome`): a flipped bit, a replayed, dropped or injected frame, an oversized length
//! prefix, bytes trickled one by one, or nothing relayed at all while both connections
//! stay open. Every thread ends when the proxy is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Handshake frames the dialer sends before its first sealed one (`Hello`, `Finish`).
const DIALER_HANDSHAKE_FRAMES: usize = 2;
/// Handshake frames the target sends before its first sealed one (`Welcome`).
const TARGET_HANDSHAKE_FRAMES: usize = 1;
/// Larger frames are not relayed (the connection is cut): no daemon sends them.
const MAX_RELAYED_FRAME: usize = 16 << 20;

/// What the proxy does to the next sealed frame towards the target (or, for `Trickle`
/// and `Hold`, to everything from now on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Relay faithfully.
    Pass,
    /// Flip one bit in the middle of the frame.
    Flip,
    /// Relay the frame twice.
    Replay,
    /// Swallow the frame.
    Drop,
    /// Send this many frames of random bytes before the frame.
    Garbage(usize),
    /// Send a length prefix of 4 GiB - 1 instead of the frame.
    Oversize,
    /// From now on, relay towards the target one byte every 100 ms (slowloris).
    Trickle,
    /// From now on, relay nothing in either direction (no data, no close): half-open.
    Hold,
}

struct Shared {
    target: SocketAddr,
    fault: Mutex<Fault>,
    /// One-shot faults applied so far.
    applied: AtomicUsize,
    /// Sealed frames from the dialer handled (relayed, altered or dropped) so far.
    sealed: AtomicUsize,
    /// Connections relayed so far.
    accepted: AtomicUsize,
    /// Relay threads running (two per connection).
    pumps: AtomicUsize,
    stop: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

/// A running proxy; stopped (every connection shut down) when dropped.
pub struct Proxy {
    /// Where controllers dial it.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port that relays to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            fault: Mutex::new(Fault::Pass),
            applied: AtomicUsize::new(0),
            sealed: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            pumps: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || accept_loop(&listener, &accepting));
        Proxy { addr, shared }
    }

    /// Sets what happens next.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    /// One-shot faults applied so far.
    pub fn applied(&self) -> usize {
        self.shared.applied.load(Ordering::SeqCst)
    }

    /// Sealed frames from the dialer handled (relayed, altered or dropped) so far.
    pub fn sealed_frames(&self) -> usize {
        self.shared.sealed.load(Ordering::SeqCst)
    }

    /// Connections relayed so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Relay threads still running (two per open connection).
    pub fn pumps(&self) -> usize {
        self.shared.pumps.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for socket in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Wakes the accept loop up so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(dialer) = incoming else { continue };
        let Ok(target) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let clones = [&dialer, &target].map(|s| s.try_clone().expect("clone a socket"));
        shared.sockets.lock().unwrap().extend(clones);
        for (from, to, towards_target) in [
            (dialer.try_clone(), target.try_clone(), true),
            (target.try_clone(), dialer.try_clone(), false),
        ] {
            let (Ok(from), Ok(to)) = (from, to) else {
                continue;
            };
            let shared = shared.clone();
            shared.pumps.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                pump(&shared, from, to, towards_target);
                shared.pumps.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// Relays frames from `from` to `to` until either side closes (then passes the close on),
/// applying the current fault to sealed frames towards the target.
fn pump(shared: &Shared, mut from: TcpStream, mut to: TcpStream, towards_target: bool) {
    let handshake = if towards_target {
        DIALER_HANDSHAKE_FRAMES
    } else {
        TARGET_HANDSHAKE_FRAMES
    };
    let mut frames = 0;
    let mut rng = ChaCha20Rng::seed_from_u64(shared.accepted.load(Ordering::SeqCst) as u64);
    loop {
        hold(shared);
        let mut header = [0u8; 4];
        if from.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > MAX_RELAYED_FRAME {
            break;
        }
        let mut frame = header.to_vec();
        frame.resize(4 + len, 0);
        if from.read_exact(&mut frame[4..]).is_err() {
            break;
        }
        frames += 1;
        hold(shared);
        let sealed = towards_target && frames > handshake;
        let fault = if sealed { take(shared) } else { Fault::Pass };
        let sent = match fault {
            Fault::Pass | Fault::Hold => to.write_all(&frame),
            Fault::Flip => {
                let middle = 4 + len / 2;
                frame[middle] ^= 0x10;
                to.write_all(&frame)
            }
            Fault::Replay => to.write_all(&frame).and_then(|()| to.write_all(&frame)),
            Fault::Drop => Ok(()),
            Fault::Garbage(n) => (0..n)
                .try_for_each(|_| to.write_all(&garbage(&mut rng)))
                .and_then(|()| to.write_all(&frame)),
            Fault::Oversize => to.write_all(&u32::MAX.to_be_bytes()),
            Fault::Trickle => trickle(shared, &mut to, &frame),
        };
        if sent.is_err() {
            break;
        }
        if sealed {
            shared.sealed.fetch_add(1, Ordering::SeqCst);
        }
    }
    hold(shared);
    let _ = to.shutdown(Shutdown::Write);
}

/// The fault for this frame: one-shot faults are used up, `Trickle` and `Hold` stay.
fn take(shared: &Shared) -> Fault {
    let mut fault = shared.fault.lock().unwrap();
    let now = *fault;
    if !matches!(now, Fault::Pass | Fault::Trickle | Fault::Hold) {
        *fault = Fault::Pass;
        shared.applied.fetch_add(1, Ordering::SeqCst);
    }
    now
}

/// Waits while the proxy holds its connections (or until it stops).
fn hold(shared: &Shared) {
    while *shared.fault.lock().unwrap() == Fault::Hold && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `frame` one byte every 100 ms while the fault stays `Trickle`, then the rest at once.
fn trickle(shared: &Shared, to: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    for (i, byte) in frame.iter().enumerate() {
        if *shared.fault.lock().unwrap() != Fault::Trickle || shared.stop.load(Ordering::SeqCst) {
            return to.write_all(&frame[i..]);
        }
        to.write_all(&[*byte])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A frame of 16 to 271 random bytes, correctly length-prefixed.
fn garbage(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let len = 16 + rng.next_u32() % 256;
    let mut frame = len.to_be_bytes().to_vec();
    let start = frame.len();
    frame.resize(start + len as usize, 0);
    rng.fill_bytes(&mut frame[start..]);
    frame
}
