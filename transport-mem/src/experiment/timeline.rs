//! A scenario file's timeline: faults applied one after another, each at a time after the
//! timeline starts or once a condition holds, with what each one waited for.

use serde::Deserialize;

use super::scenarios::{converge, knows, pick, reaches_none};
use super::*;

/// One step of a timeline: when, then what.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Step {
    /// Run no sooner than this long after the timeline starts, ms.
    pub at_ms: Option<u64>,
    /// Run once this holds (checked from the previous step on).
    pub after: Option<Condition>,
    /// Then wait this long, ms.
    pub wait_ms: Option<u64>,
    /// What happens.
    pub action: Action,
    /// The nodes it happens to (controller numbers, in the topology's order).
    pub nodes: Option<Vec<SlotId>>,
    /// The same by the topology file's node names.
    pub names: Option<Vec<String>>,
    /// Or this fraction of the live honest nodes, drawn with the experiment's seed.
    pub fraction: Option<f64>,
    /// `loss`: the new frame loss probability.
    pub loss: Option<f64>,
    /// `loss`: what a loss does (`drop`, `reset`, `retransmit`).
    pub mode: Option<String>,
    /// `link-change`: the neighbour (controller or stub number) whose link changes.
    pub peer: Option<usize>,
    /// `link-change`: its new cost (0 removes the link).
    pub cost: Option<u64>,
    /// `misbehave`: `forge`, `replay`, `flood`, `replay-frames`.
    pub kind: Option<String>,
}

/// What a step does.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Crash the nodes (no leave).
    #[default]
    Crash,
    /// Restart the nodes (same identity, fresh state); all crashed ones when none named.
    Restart,
    /// The nodes on one side, every other node on the other.
    Partition,
    /// End every partition.
    Heal,
    /// Set the frame loss.
    Loss,
    /// One node sets the cost of its link to `peer`.
    LinkChange,
    /// The nodes leave gracefully.
    Leave,
    /// The nodes start to misbehave.
    Misbehave,
}

/// What a step can wait for.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Every live honest table equals the reference.
    Converged,
    /// No live honest node reaches a node crashed on the timeline, nor one across the
    /// timeline's partition.
    Withdrawn,
    /// Every live honest node knows every live honest member.
    Merged,
}

impl Step {
    /// Checks that the step names what its action needs; `at` names it in errors.
    pub fn check(&self, at: &str) -> Result<(), String> {
        let needs = |what: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(format!("{at}: {what}"))
            }
        };
        let chosen = self.nodes.is_some() || self.names.is_some() || self.fraction.is_some();
        match self.action {
            Action::Crash | Action::Leave | Action::Partition => {
                needs("needs nodes, names or fraction", chosen)
            }
            Action::Misbehave => {
                needs("needs nodes, names or fraction", chosen)?;
                misbehavior(self.kind.as_deref())
                    .map(|_| ())
                    .map_err(|e| format!("{at}: {e}"))
            }
            Action::Loss => {
                needs(
                    "needs loss (0 to 1)",
                    self.loss.is_some_and(|l| (0.0..=1.0).contains(&l)),
                )?;
                loss_mode(self.mode.as_deref())
                    .map(|_| ())
                    .map_err(|e| format!("{at}: {e}"))
            }
            Action::LinkChange => needs(
                "needs one node, a peer and a cost",
                (self.nodes.as_ref().is_some_and(|n| n.len() == 1) || self.names.is_some())
                    && self.peer.is_some()
                    && self.cost.is_some(),
            ),
            Action::Restart | Action::Heal => Ok(()),
        }
    }
}

fn misbehavior(kind: Option<&str>) -> Result<Misbehavior, String> {
    match kind {
        Some("forge") => Ok(Misbehavior::Forge),
        Some("replay") => Ok(Misbehavior::Replay),
        Some("flood") => Ok(Misbehavior::Flood),
        Some("replay-frames") => Ok(Misbehavior::ReplayFrames),
        other => Err(format!(
            "kind {other:?}: one of forge, replay, flood, replay-frames"
        )),
    }
}

fn loss_mode(mode: Option<&str>) -> Result<LossMode, String> {
    LossMode::named(mode.unwrap_or("drop")).map_err(|e| format!("mode: {e}"))
}

/// The timeline's state while it runs.
struct Run<'a> {
    sim: &'a mut Sim,
    honest: &'a mut Vec<SlotId>,
    topology: &'a Topology,
    rng: &'a mut ChaCha20Rng,
    crashed: Vec<SlotId>,
    /// One side of the timeline's partition, while it lasts.
    side: Vec<SlotId>,
    deadline: Duration,
}

/// Runs `steps` in order; the nodes they crash, take out or turn leave `honest` (restarts
/// bring them back). Returns one record per step: its action, when it ran (ms after the
/// timeline started) and how long its condition took (`null`: not within 60 rounds).
pub(super) fn run_timeline(
    sim: &mut Sim,
    honest: &mut Vec<SlotId>,
    topology: &Topology,
    rng: &mut ChaCha20Rng,
    (steps, period): (&[Step], Duration),
) -> Value {
    let start = sim.now();
    let mut run = Run {
        sim,
        honest,
        topology,
        rng,
        crashed: Vec::new(),
        side: Vec::new(),
        deadline: period * 60,
    };
    let records: Vec<Value> = steps
        .iter()
        .map(|step| {
            if let Some(at) = step.at_ms {
                run.sim.run_until(start + Duration::from_millis(at));
            }
            let waited = step.after.map(|c| run.wait(c));
            run.sim
                .run_for(Duration::from_millis(step.wait_ms.unwrap_or(0)));
            let at_ms = millis(run.sim.now().since(start));
            let nodes = run.act(step);
            json!({
                "action": step.action,
                "at_ms": at_ms,
                "after": step.after,
                "waited_ms": waited.map(|w| w.map(millis)),
                "nodes": nodes,
            })
        })
        .collect();
    Value::Array(records)
}

impl Run<'_> {
    /// Runs until `condition` holds; how long that took.
    fn wait(&mut self, condition: Condition) -> Option<Duration> {
        let since = self.sim.now();
        let live = self.honest.clone();
        let deadline = since + self.deadline;
        let poll = Duration::from_millis(50);
        match condition {
            Condition::Converged => converge(self.sim, &live, since, deadline),
            Condition::Withdrawn => {
                let gone = self.gone(&live);
                self.sim
                    .run_until_true(deadline, poll, |s| {
                        live.iter()
                            .zip(&gone)
                            .all(|(&h, gone)| reaches_none(s, h, gone))
                    })
                    .map(|t| t.since(since))
            }
            Condition::Merged => self
                .sim
                .run_until_true(deadline, poll, |s| {
                    live.iter().all(|&h| knows(s, h, live.len()))
                })
                .map(|t| t.since(since)),
        }
    }

    /// What each of `live` must no longer reach: the crashed, and the partition's far side.
    fn gone(&self, live: &[SlotId]) -> Vec<Vec<NodeId>> {
        let id = |s: SlotId| self.sim.config(s).node_id;
        live.iter()
            .map(|h| {
                let near = self.side.contains(h);
                (0..self.sim.len())
                    .filter(|s| {
                        self.crashed.contains(s)
                            || (!self.side.is_empty() && self.side.contains(s) != near)
                    })
                    .map(id)
                    .collect()
            })
            .collect()
    }

    /// The nodes a step names, or draws.
    fn chosen(&mut self, step: &Step) -> Vec<SlotId> {
        let mut nodes: Vec<SlotId> = step.nodes.clone().unwrap_or_default();
        for name in step.names.iter().flatten() {
            let found = (0..self.topology.controllers())
                .find(|&i| self.topology.site(i).and_then(|s| s.name.as_ref()) == Some(name));
            nodes.extend(found);
        }
        if let Some(f) = step.fraction {
            let mut pool = self.honest.clone();
            let k = (self.honest.len() as f64 * f.clamp(0.0, 1.0)).round() as usize;
            nodes.extend(pick(&mut pool, k.max(1), self.rng));
        }
        nodes.retain(|&s| s < self.sim.len());
        nodes
    }

    /// Applies a step; returns the nodes it applied to.
    fn act(&mut self, step: &Step) -> Vec<SlotId> {
        let nodes = match step.action {
            Action::Heal | Action::Loss => Vec::new(),
            Action::Restart if step.nodes.is_none() && step.names.is_none() => {
                std::mem::take(&mut self.crashed)
            }
            _ => self.chosen(step),
        };
        match step.action {
            Action::Crash | Action::Leave => {
                for &s in &nodes {
                    if step.action == Action::Crash {
                        self.sim.crash(s);
                        self.crashed.push(s);
                    } else {
                        self.sim.leave(s);
                    }
                }
                self.honest.retain(|s| !nodes.contains(s));
            }
            Action::Restart => {
                for &s in &nodes {
                    if self.sim.restart(s).is_ok() && !self.honest.contains(&s) {
                        self.honest.push(s);
                    }
                }
                self.crashed.retain(|s| !nodes.contains(s));
                self.honest.sort_unstable();
            }
            Action::Partition => {
                self.sim.partition(std::slice::from_ref(&nodes));
                self.side = nodes.clone();
            }
            Action::Heal => {
                self.sim.heal();
                self.side.clear();
            }
            Action::Loss => {
                let mode = loss_mode(step.mode.as_deref()).unwrap_or(LossMode::Drop);
                self.sim.set_loss(step.loss.unwrap_or(0.0), mode);
            }
            Action::LinkChange => self.change_link(&nodes, step),
            Action::Misbehave => {
                let how = misbehavior(step.kind.as_deref()).ok();
                for &s in &nodes {
                    self.sim.misbehave(s, how);
                }
                self.honest.retain(|s| !nodes.contains(s));
            }
        }
        nodes
    }

    /// One node sets its link to `peer` to `cost` (adds it if missing; 0 removes it).
    fn change_link(&mut self, nodes: &[SlotId], step: &Step) {
        let (Some(&node), Some(peer), Some(cost)) = (nodes.first(), step.peer, step.cost) else {
            return;
        };
        let Some(mut links) = self.sim.node(node).map(|n| n.config().links.clone()) else {
            return; // not running
        };
        links.retain(|l| l.asn != asn(peer));
        if cost > 0 {
            let capacity = self
                .topology
                .graph()
                .edge_weight(node, peer)
                .map_or(100, |w| w.capacity);
            links.push(AsLink {
                asn: asn(peer),
                capacity,
                cost,
            });
        }
        self.sim.set_links(node, links);
    }
}
