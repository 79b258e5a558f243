/*!
`fa2-target`: the `fa2` crate (a Rust port of graphology's ForceAtlas2) behind Forcefield's
[`Target`] trait ([`Fa2Target`]), in two binaries: `fa2-target` speaks `forcefield-target/1` on
stdin and stdout (driven by `forcefield run --target`), and `hunt` embeds the harness, one
executable that is driver and worker (`cargo run --release -p fa2-target --bin hunt -- run --time
60s`).

An engine we did not write, adapted the way a user would adapt theirs: the adapter keeps the graph
(fa2 can add nodes and edges but not remove them) and rebuilds fa2's data from it after an edit,
carrying positions; `step` runs fa2 epochs. ForceAtlas2 is 2-D: a given `z` is dropped and read back
as 0. Settings start from `FA2Settings::from_graph_order` (what graphology infers from the node
count), single-threaded, so that runs are reproducible; `set_params` overrides them.

Run it under the conformance check: `forcefield target check "cargo run -q -p fa2-target --bin
fa2-target"`, or `cargo run -q -p fa2-target --bin hunt -- target check`.
*/

use fa2::{FA2Data, FA2Layout, FA2Settings};
use forcefield_target::{
    Capabilities, Capability, Counts, Edge, Graph, Params, Point, Result, Target, TargetError,
    TargetInfo,
};

/// Most nodes accepted: the adapter's own limit, so an absurd request is refused, not an OOM.
const MAX_NODES: u64 = 1 << 20;
/// Most edges accepted.
const MAX_EDGES: usize = 1 << 22;

/// ForceAtlas2 settings a caller may override; `None` keeps graphology's inferred value.
#[derive(Clone, Debug, Default, PartialEq)]
struct Settings {
    gravity: Option<f32>,
    scaling_ratio: Option<f32>,
    slow_down: Option<f32>,
    strong_gravity: Option<bool>,
    edge_weight_influence: Option<f32>,
    /// Barnes-Hut theta; 0 forces pairwise repulsion.
    barnes_hut_theta: Option<f32>,
}

impl Settings {
    fn from_params(params: &Params) -> Result<Settings> {
        let mut s = Settings::default();
        for (key, value) in params {
            let number = || {
                value
                    .as_f64()
                    .map(|x| x as f32)
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        TargetError::Rejected(format!(
                            "`{key}` must be a finite number >= 0, not {value}"
                        ))
                    })
            };
            match key.as_str() {
                "gravity" => s.gravity = Some(number()?),
                "scaling_ratio" => s.scaling_ratio = Some(number()?),
                "slow_down" => s.slow_down = Some(number()?),
                "edge_weight_influence" => s.edge_weight_influence = Some(number()?),
                "barnes_hut_theta" => s.barnes_hut_theta = Some(number()?),
                "strong_gravity" => {
                    s.strong_gravity = Some(value.as_bool().ok_or_else(|| {
                        TargetError::Rejected(format!("`strong_gravity` must be true or false, not {value}"))
                    })?)
                }
                _ => return Err(TargetError::Rejected(format!(
                    "unknown parameter `{key}` (known: gravity, scaling_ratio, slow_down, strong_gravity, edge_weight_influence, barnes_hut_theta)"
                ))),
            }
        }
        Ok(s)
    }

    fn build(&self, order: usize) -> FA2Settings<f32> {
        let mut settings = FA2Settings::<f32>::from_graph_order(order).parallel(false);
        if let Some(theta) = self.barnes_hut_theta {
            settings = if theta > 0.0 {
                settings.with_barnes_hut_theta(theta)
            } else {
                settings.with_pairwise_repulsion()
            };
        }
        if let Some(g) = self.gravity {
            settings = settings.gravity(g);
        }
        if let Some(r) = self.scaling_ratio {
            settings = settings.scaling_ratio(r);
        }
        if let Some(d) = self.slow_down {
            settings = settings.slow_down(d);
        }
        if let Some(e) = self.edge_weight_influence {
            settings = settings.edge_weight_influence(e);
        }
        if let Some(sg) = self.strong_gravity {
            settings = settings.strong_gravity_mode(sg);
        }
        settings
    }
}

/// The adapter: the graph as the case format defines it, and fa2's layout built from it.
/// fa2 behind the trait: one layout at a time, rebuilt after each edit.
#[derive(Default)]
pub struct Fa2Target {
    positions: Vec<[f32; 2]>,
    edges: Vec<Edge>,
    /// Nodes ever added: seeds the next seeded position, so seeding does not depend on removals.
    ever_added: u64,
    settings: Settings,
    /// fa2's layout of the current graph; dropped by an edit, rebuilt by the next step.
    layout: Option<FA2Layout<f32>>,
}

/// SplitMix64: a seeded position is a pure function of the node's ordinal.
fn seeded(ordinal: u64) -> [f32; 2] {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let unit = |z: u64| (z >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0;
    let a = mix(ordinal.wrapping_mul(2).wrapping_add(0x9e37_79b9_7f4a_7c15));
    let b = mix(ordinal.wrapping_mul(2).wrapping_add(0x9e37_79b9_7f4a_7c16));
    [unit(a), unit(b)]
}

fn rejected(message: String) -> TargetError {
    TargetError::Rejected(message)
}

impl Fa2Target {
    /// Brings the adapter's positions up to date with fa2's and drops the layout (before an edit).
    fn settle(&mut self) {
        if let Some(layout) = self.layout.take() {
            self.positions = layout.data().positions().map(|(x, y)| [x, y]).collect();
        }
    }

    fn check_edges(&self, edges: &[Edge], nodes: usize) -> Result<()> {
        if self.edges.len() + edges.len() > MAX_EDGES {
            return Err(rejected(format!("more than {MAX_EDGES} edges")));
        }
        for e in edges {
            if e.u as usize >= nodes || e.v as usize >= nodes {
                return Err(rejected(format!(
                    "edge ({}, {}) names a node past the last ({nodes} nodes)",
                    e.u, e.v
                )));
            }
            if !(e.w.is_finite() && e.w >= 0.0) {
                return Err(rejected(format!(
                    "edge ({}, {}) has weight {}",
                    e.u, e.v, e.w
                )));
            }
        }
        Ok(())
    }

    fn new_positions(&mut self, count: u64, given: Option<&[Point]>) -> Result<Vec<[f32; 2]>> {
        if self.positions.len() as u64 + count > MAX_NODES {
            return Err(rejected(format!("more than {MAX_NODES} nodes")));
        }
        match given {
            Some(p) if p.len() as u64 != count => {
                Err(rejected(format!("{} positions for {count} nodes", p.len())))
            }
            Some(p) if p.iter().flatten().any(|c| !c.is_finite()) => {
                Err(rejected("a position is not finite".into()))
            }
            Some(p) => {
                self.ever_added += count;
                Ok(p.iter().map(|q| [q[0], q[1]]).collect())
            }
            None => {
                let start = self.ever_added;
                self.ever_added += count;
                Ok((start..start + count).map(seeded).collect())
            }
        }
    }
}

impl Target for Fa2Target {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            name: "fa2".into(),
            version: "0.3 (ForceAtlas2, 2-D)".into(),
            capabilities: Capabilities::from([Capability::Params, Capability::Counts]),
        }
    }

    fn create(&mut self, graph: &Graph, params: Option<&Params>) -> Result<()> {
        let settings = params.map(Settings::from_params).transpose()?;
        let mut fresh = Fa2Target::default();
        fresh.positions = fresh.new_positions(graph.num_nodes, graph.positions.as_deref())?;
        fresh.check_edges(&graph.edges, fresh.positions.len())?;
        fresh.edges = graph.edges.clone();
        fresh.settings = settings.unwrap_or_default();
        *self = fresh;
        Ok(())
    }

    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
        let new = self.new_positions(count, positions)?;
        self.settle();
        self.positions.extend(new);
        Ok(())
    }

    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        let n = self.positions.len();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= n) {
            return Err(rejected(format!("node {bad} does not exist ({n} nodes)")));
        }
        self.settle();
        let mut gone = vec![false; n];
        ids.iter().for_each(|&i| gone[i as usize] = true);
        let mut renumber = vec![u32::MAX; n];
        let mut next = 0;
        for (i, slot) in renumber.iter_mut().enumerate() {
            if !gone[i] {
                *slot = next;
                next += 1;
            }
        }
        let mut i = 0;
        self.positions.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        self.edges = self
            .edges
            .iter()
            .filter(|e| !gone[e.u as usize] && !gone[e.v as usize])
            .map(|e| Edge {
                u: renumber[e.u as usize],
                v: renumber[e.v as usize],
                w: e.w,
            })
            .collect();
        Ok(())
    }

    fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        self.check_edges(edges, self.positions.len())?;
        self.settle();
        self.edges.extend_from_slice(edges);
        Ok(())
    }

    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        self.settle();
        self.edges
            .retain(|e| !pairs.iter().any(|&(a, b)| e.joins(a, b)));
        Ok(())
    }

    fn step(&mut self, count: u64) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        if self.layout.is_none() {
            let mut data = FA2Data::<f32>::with_capacity(self.positions.len(), self.edges.len());
            for p in &self.positions {
                data.add_node_with_position(p[0], p[1]);
            }
            for e in &self.edges {
                data.add_edge_with_weight(e.u as usize, e.v as usize, e.w);
            }
            self.layout = Some(self.settings.build(self.positions.len()).build(data));
        }
        let Some(layout) = self.layout.as_mut() else {
            return Err(TargetError::Internal("no layout after building one".into()));
        };
        for _ in 0..count {
            layout.epoch();
        }
        Ok(())
    }

    fn positions(&mut self) -> Result<Vec<Point>> {
        Ok(match &self.layout {
            Some(layout) => layout
                .data()
                .positions()
                .map(|(x, y)| [x, y, 0.0])
                .collect(),
            None => self.positions.iter().map(|p| [p[0], p[1], 0.0]).collect(),
        })
    }

    fn set_params(&mut self, params: &Params) -> Result<()> {
        let settings = Settings::from_params(params)?;
        self.settle();
        self.settings = settings;
        Ok(())
    }

    fn counts(&mut self) -> Result<Counts> {
        Ok(Counts {
            nodes: self.positions.len() as u64,
            edges: self.edges.len() as u64,
            node_capacity: None,
            edge_capacity: None,
            cell_capacity: None,
        })
    }
}
