//! The experiment's settings by name: the command-line flags, and [`Experiment::finish`],
//! which reads the topology file they name. Scenario files set the same names.

use std::path::Path;

use super::*;

impl Experiment {
    /// Sets the field a command-line flag names (`--nodes`, `--seed`, `--loss`,
    /// `--loss-mode`, `--scenario`, `--dissemination`, `--max-peers`, `--period-ms`,
    /// `--advert-refresh`, `--optimize-hops`, `--eager-fanout`, `--warmup-rounds`,
    /// `--settle-rounds`, `--join-ms`, `--threads`, `--attach`, `--topology`, `--stubs`,
    /// `--link-cost`, `--link-capacity`, `--latency`, `--latency-floor-ms`,
    /// `--scenario-file`, `--report`) from its value;
    /// `Ok(false)` for another flag. The examples and scenario files share it; call
    /// [`Experiment::finish`] once every flag is set.
    pub fn set_flag(&mut self, flag: &str, value: &str) -> Result<bool, String> {
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        let small = |v: &str| u32::try_from(num(v)?).map_err(|e| format!("{flag}: {e}"));
        match flag {
            "--nodes" => self.nodes = num(value)? as usize,
            "--seed" => self.seed = num(value)?,
            "--loss" => {
                self.net.loss = value.parse().map_err(|e| format!("--loss: {e}"))?;
            }
            "--loss-mode" => {
                self.net.loss_mode = LossMode::named(value).map_err(|e| format!("{flag}: {e}"))?;
            }
            "--scenario" => self.scenario = value.parse()?,
            "--dissemination" => {
                self.dissemination = match value {
                    "plumtree" => Dissemination::Plumtree,
                    "flood" => Dissemination::Flood,
                    other => return Err(format!("--dissemination: unknown {other:?}")),
                }
            }
            "--max-peers" => self.max_peers = num(value)? as usize,
            "--period-ms" => self.gossip_period = Duration::from_millis(num(value)?),
            "--advert-refresh" => self.advert_refresh = Some(small(value)?.max(1)),
            "--optimize-hops" => self.optimize_hops = small(value)?,
            "--eager-fanout" => self.eager_fanout = Some(small(value)?),
            "--warmup-rounds" => self.warmup_rounds = small(value)?,
            "--settle-rounds" => self.settle_rounds = small(value)?,
            "--join-ms" => self.join_over = Duration::from_millis(num(value)?),
            "--threads" => self.threads = (num(value)? as usize).max(1),
            "--attach" => self.attach = (num(value)? as usize).max(1),
            "--scenario-file" => self.apply_file(Path::new(value))?,
            "--report" => self.report = Some(PathBuf::from(value)),
            "--topology" => self.topology_file = Some(PathBuf::from(value)),
            "--stubs" => self.read.stubs = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--link-cost" => self.read.link_cost = num(value)?.max(1),
            "--link-capacity" => self.read.link_capacity = num(value)?.max(1),
            "--latency" => {
                self.geo_latency = match value {
                    "geo" => true,
                    "random" => false,
                    other => return Err(format!("{flag}: unknown {other:?} (random, geo)")),
                }
            }
            "--latency-floor-ms" => {
                self.latency_floor = Duration::from_millis(num(value)?.max(1));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Reads the topology file, if one is named (the experiment then has one controller per
    /// node that is not a stub), and checks that there are at least 2 controllers.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(file) = &self.topology_file {
            let topology = Topology::read(file, &self.read).map_err(|e| e.to_string())?;
            self.set_topology(topology);
        }
        if self.nodes < 2 {
            let what = match &self.topology_file {
                Some(file) => format!("{}: fewer than 2 controllers", file.display()),
                None => "--nodes must be at least 2".to_string(),
            };
            return Err(what);
        }
        Ok(())
    }
}
