//! Lanes: how the simulator hands each node its share of a time window, on a pool of
//! worker threads that lives as long as the simulator. A lane owns its node while it runs
//! (the node is lent by its slot and given back), so lanes share nothing but the
//! signature cache; the calling thread takes lanes too, and small windows run on it alone.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use overlay_core::{Action, ConnId, Event, Node, Time};

use crate::trace::{self, Record};

/// Index of a node slot in the simulator (stable across crashes and restarts).
pub type SlotId = usize;

/// Windows with fewer lanes than this run on the calling thread (unit tests use the
/// workers for almost every window).
const PARALLEL_MIN_LANES: usize = if cfg!(test) { 2 } else { 16 };

/// What a node is handed within a window.
pub(crate) enum Input {
    /// A timer may be due.
    Wake,
    /// An event.
    Event(Event),
}

/// What handing a node its share of a window produced, in the node's order.
pub(crate) enum Output {
    /// A trace record (of an event handed or an action returned).
    Record(Record),
    /// An action to carry out.
    Act(Action),
}

/// One node's share of a window.
pub(crate) struct Lane {
    /// Its slot.
    pub slot: SlotId,
    /// The node, lent for the window.
    pub node: Node,
    /// What it is handed, in time order.
    pub share: Vec<(Time, Input)>,
}

/// What a lane produced, with times, and how many events the node was handed.
#[derive(Default)]
pub(crate) struct LaneOutput {
    /// Records and actions in the node's order.
    pub items: Vec<(Time, Output)>,
    /// Events handed.
    pub handled: u64,
}

type Job = (Lane, Time);
type Done = (Lane, LaneOutput);
/// A lane run by a worker, or what it panicked with.
type Finished = std::thread::Result<Done>;

/// Lanes waiting for a thread, and whether the pool is closing.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closing: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    /// The next lane to run; with `wait`, blocks until there is one (`None`: closing).
    fn next(&self, wait: bool) -> Option<Job> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if !wait || q.closing {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The worker pool (no workers with one thread).
pub(crate) struct Lanes {
    shared: Arc<Shared>,
    done: Receiver<Finished>,
    workers: Vec<JoinHandle<()>>,
}

impl Lanes {
    /// A pool of `threads - 1` workers (the calling thread is the last).
    pub(crate) fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let (done_tx, done) = channel::<Finished>();
        let workers = (1..threads.max(1))
            .map(|_| {
                let shared = Arc::clone(&shared);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    while let Some((lane, end)) = shared.next(true) {
                        // A panic goes back to the simulator's thread, which re-raises it.
                        let finished = catch_unwind(AssertUnwindSafe(|| run(lane, end)));
                        if done_tx.send(finished).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Lanes {
            shared,
            done,
            workers,
        }
    }

    /// Runs every lane of the window ending at `end`; returns each with its output (in no
    /// particular order).
    pub(crate) fn run(&mut self, lanes: Vec<Lane>, end: Time) -> Vec<Done> {
        if self.workers.is_empty() || lanes.len() < PARALLEL_MIN_LANES {
            return lanes.into_iter().map(|lane| run(lane, end)).collect();
        }
        let count = lanes.len();
        {
            let mut q = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            q.jobs.extend(lanes.into_iter().map(|lane| (lane, end)));
        }
        self.shared.ready.notify_all();
        let mut outputs = Vec::with_capacity(count);
        while let Some((lane, end)) = self.shared.next(false) {
            outputs.push(run(lane, end));
        }
        while outputs.len() < count {
            match self.done.recv() {
                Ok(Ok(done)) => outputs.push(done),
                Ok(Err(panic)) => resume_unwind(panic),
                Err(_) => panic!("the simulator's worker threads are gone"),
            }
        }
        outputs
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closing = true;
        self.shared.ready.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Hands one node its share of a window in time order: its deliveries, and its timers
/// when due (those it sets for later in the window too). A connection it closes gets
/// nothing more, as if the close had been carried out at once.
fn run(mut lane: Lane, end: Time) -> Done {
    let mut out = LaneOutput::default();
    let (slot, node) = (lane.slot, &mut lane.node);
    let mut closed: Vec<ConnId> = Vec::new();
    let mut timer: Option<Time> = None;
    let mut share = std::mem::take(&mut lane.share).into_iter().peekable();
    loop {
        let next = share.peek().map(|(at, _)| *at);
        let (at, event) = match (next, timer) {
            (next, Some(t)) if next.is_none_or(|n| t < n) => {
                timer = None;
                (t, Event::Tick)
            }
            (Some(_), _) => match share.next() {
                Some((at, Input::Event(event))) => (at, event),
                Some((at, Input::Wake)) => (at, Event::Tick),
                None => break,
            },
            (None, _) => break,
        };
        let stale = match &event {
            Event::Tick => node.next_wakeup().is_none_or(|t| t > at),
            Event::Received { conn, .. } | Event::Disconnected { conn } => closed.contains(conn),
            _ => false,
        };
        if stale {
            continue;
        }
        out.items
            .push((at, Output::Record(trace::event_record(at, slot, &event))));
        out.handled += 1;
        for action in node.handle(at, event) {
            if let Action::Close { conn, .. } = &action {
                closed.push(*conn);
            }
            let record = trace::action_record(at, slot, &action);
            out.items.push((at, Output::Record(record)));
            out.items.push((at, Output::Act(action)));
        }
        timer = node.next_wakeup().filter(|&t| t < end).map(|t| t.max(at));
    }
    (lane, out)
}
