//! The conformance check against an in-process reference target with one defect switched on at a
//! time: each defect is reported in plain words at the right step, and the clean target passes.

use std::sync::atomic::{AtomicU32, Ordering};

use forcefield_target::{
    check, Capabilities, Capability, Counts, Edge, Graph, Params, Point, Result, Target,
    TargetError, TargetInfo,
};

#[derive(Clone, Copy, Default, PartialEq)]
enum Defect {
    #[default]
    None,
    /// Removal by swap-remove: the survivors' order is not kept.
    SwapRemove,
    /// Out-of-range ids are ignored instead of rejected.
    AcceptsBadIds,
    /// Seeded positions come from a process-wide counter: two fresh targets differ.
    Nondeterministic,
    /// `counts` forgets the self loops.
    CountsWithoutLoops,
}

/// Nodes pulled toward the origin and along edges; deterministic.
#[derive(Default)]
struct Reference {
    defect: Defect,
    pos: Vec<Point>,
    edges: Vec<Edge>,
    ever: u32,
}

static GLOBAL_SEED: AtomicU32 = AtomicU32::new(0);

impl Reference {
    fn seeded(&mut self) -> Point {
        let k = if self.defect == Defect::Nondeterministic {
            GLOBAL_SEED.fetch_add(1, Ordering::Relaxed)
        } else {
            self.ever
        };
        self.ever += 1;
        [k as f32 * 0.37 - 2.0, (k as f32 * 1.3).cos() * 3.0, 0.0]
    }
    fn valid(&self, id: u32) -> Result<()> {
        if id as usize >= self.pos.len() && self.defect != Defect::AcceptsBadIds {
            return Err(TargetError::Rejected(format!("no node {id}")));
        }
        Ok(())
    }
}

impl Target for Reference {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            name: "reference".into(),
            version: "1".into(),
            capabilities: Capabilities::from([Capability::Counts, Capability::Sssp]),
        }
    }
    fn create(&mut self, g: &Graph, _: Option<&Params>) -> Result<()> {
        self.pos.clear();
        self.ever = 0;
        match &g.positions {
            Some(p) => self.pos = p.clone(),
            None => (0..g.num_nodes).for_each(|_| {
                let p = self.seeded();
                self.pos.push(p)
            }),
        }
        self.edges = g.edges.clone();
        Ok(())
    }
    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
        if positions.is_some_and(|p| p.len() as u64 != count) {
            return Err(TargetError::Rejected("position count".into()));
        }
        for i in 0..count as usize {
            let p = match positions {
                Some(p) => p[i],
                None => self.seeded(),
            };
            self.pos.push(p);
        }
        Ok(())
    }
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        ids.iter().try_for_each(|&i| self.valid(i))?;
        let n = self.pos.len() as u32;
        let mut gone: Vec<u32> = ids.iter().copied().filter(|&i| i < n).collect();
        gone.sort_unstable();
        gone.dedup();
        self.edges
            .retain(|e| !gone.contains(&e.u) && !gone.contains(&e.v));
        let map: Vec<u32> = (0..n)
            .map(|i| i - gone.iter().filter(|&&g| g < i).count() as u32)
            .collect();
        for e in &mut self.edges {
            e.u = map[e.u as usize];
            e.v = map[e.v as usize];
        }
        for &g in gone.iter().rev() {
            if self.defect == Defect::SwapRemove {
                self.pos.swap_remove(g as usize);
            } else {
                self.pos.remove(g as usize);
            }
        }
        Ok(())
    }
    fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        edges
            .iter()
            .try_for_each(|e| self.valid(e.u).and(self.valid(e.v)))?;
        let n = self.pos.len() as u32;
        self.edges
            .extend(edges.iter().filter(|e| e.u < n && e.v < n).copied());
        Ok(())
    }
    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        self.edges
            .retain(|e| !pairs.iter().any(|&(a, b)| e.joins(a, b)));
        Ok(())
    }
    fn step(&mut self, count: u64) -> Result<()> {
        for _ in 0..count {
            let before = self.pos.clone();
            for p in &mut self.pos {
                p.iter_mut().for_each(|c| *c *= 0.9);
            }
            for e in &self.edges {
                let (u, v) = (before[e.u as usize], before[e.v as usize]);
                for (k, (a, b)) in u.iter().zip(v.iter()).enumerate() {
                    let pull = 0.05 * (b - a);
                    self.pos[e.u as usize][k] += pull;
                    self.pos[e.v as usize][k] -= pull;
                }
            }
        }
        Ok(())
    }
    fn positions(&mut self) -> Result<Vec<Point>> {
        Ok(self.pos.clone())
    }
    fn sssp(&mut self, source: u32) -> Result<Vec<f32>> {
        self.valid(source)?;
        // Bellman-Ford: small graphs only.
        let mut d = vec![f32::INFINITY; self.pos.len()];
        d[source as usize] = 0.0;
        for _ in 0..self.pos.len() {
            for e in &self.edges {
                let (u, v) = (e.u as usize, e.v as usize);
                d[v] = d[v].min(d[u] + e.w);
                d[u] = d[u].min(d[v] + e.w);
            }
        }
        Ok(d)
    }
    fn counts(&mut self) -> Result<Counts> {
        let loops = if self.defect == Defect::CountsWithoutLoops {
            self.edges.iter().filter(|e| e.u == e.v).count()
        } else {
            0
        };
        Ok(Counts {
            nodes: self.pos.len() as u64,
            edges: (self.edges.len() - loops) as u64,
            node_capacity: None,
            edge_capacity: None,
            cell_capacity: None,
        })
    }
}

fn report(defect: Defect) -> forcefield_target::CheckReport {
    check(&mut || {
        Ok(Box::new(Reference {
            defect,
            ..Reference::default()
        }) as Box<dyn Target>)
    })
}

fn failed(defect: Defect) -> Vec<String> {
    let r = report(defect);
    r.problems
        .iter()
        .map(|p| format!("{}: {}", p.step, p.what))
        .collect()
}

#[test]
fn the_reference_target_is_conformant() {
    let r = report(Defect::None);
    assert!(r.passed(), "{r}");
    assert!(
        r.passed_steps.contains(&"capability sssp".to_string()),
        "{r}"
    );
    assert!(r.passed_steps.contains(&"determinism".to_string()), "{r}");
    assert_eq!(r.skipped.len(), Capability::ALL.len() - 2);
    assert!(r.to_string().ends_with("conformant"), "{r}");
}

#[test]
fn survivors_out_of_order_after_a_removal_are_named() {
    let f = failed(Defect::SwapRemove);
    assert!(
        f[0].starts_with("remove nodes: after removing nodes 1 and 4, the survivors are not renumbered in order carrying their positions (node 1:"),
        "{f:?}"
    );
}

#[test]
fn accepted_bad_ids_are_named() {
    let f = failed(Defect::AcceptsBadIds);
    assert_eq!(
        f,
        [
            "bad input: `remove_nodes with an id past the last node` was accepted; it must be rejected",
            "bad input: `add_edges to a node that does not exist` was accepted; it must be rejected",
        ],
    );
}

#[test]
fn two_fresh_runs_that_differ_are_named() {
    let f = failed(Defect::Nondeterministic);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("determinism: two runs of the same requests on fresh targets end at different positions (node "),
        "{f:?}"
    );
}

#[test]
fn wrong_counts_are_named_with_the_right_ones() {
    let f = failed(Defect::CountsWithoutLoops);
    assert_eq!(
        f,
        ["capability counts: counts says 9 nodes and 5 edges; there are 9 and 6"]
    );
}
