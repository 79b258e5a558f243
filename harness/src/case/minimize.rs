/*!
Minimization: the smallest case that still fails with the same signature.

Works on any case, not only generated ones. A sequence of reduction passes — delta debugging
([`crate::case::ddmin`]) over operations, initial edges and initial nodes, then smaller counts inside
operations and parameters reset to their defaults — repeated until a whole round changes nothing or
the budget is spent. Every candidate is judged by a caller-supplied test (in campaigns: a run in an
isolated worker, compared by [`crate::client::signature::Signature`]), so an accepted step always reproduces
the same bug; minimization never drifts to another one.
*/

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use forcefield::{Edge, EnvFault, SimParams};

use crate::case::ddmin::ddmin;
use crate::case::{Case, Op};

/// Size of a case as minimization reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSize {
    /// The most nodes alive at any point of the case.
    pub nodes: u64,
    /// Edges of the initial graph plus edges added by ops.
    pub edges: u64,
    /// Operations.
    pub ops: u64,
}

impl CaseSize {
    /// The size of `case`.
    pub fn of(case: &Case) -> Self {
        let peak = case.node_counts().into_iter().max().unwrap_or(0);
        let added: u64 = case
            .ops
            .iter()
            .map(|op| match op {
                Op::AddEdges { edges } => edges.len() as u64,
                _ => 0,
            })
            .sum();
        CaseSize {
            nodes: peak.max(case.graph.num_nodes),
            edges: case.graph.edges.len() as u64 + added,
            ops: case.ops.len() as u64,
        }
    }
}

impl std::fmt::Display for CaseSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} nodes, {} edges, {} ops",
            self.nodes, self.edges, self.ops
        )
    }
}

/// Limits of one minimization.
#[derive(Clone, Copy, Debug)]
pub struct MinimizeLimits {
    /// Most candidate runs.
    pub max_runs: usize,
    /// Wall-clock budget.
    pub max_time: Duration,
}

impl Default for MinimizeLimits {
    fn default() -> Self {
        MinimizeLimits {
            max_runs: 2000,
            max_time: Duration::from_secs(120),
        }
    }
}

/// What a minimization did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinimizeReport {
    /// Size before.
    pub before: CaseSize,
    /// Size after.
    pub after: CaseSize,
    /// Candidates tried.
    pub runs: usize,
    /// Candidates that reproduced and were kept.
    pub accepted: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// Whether a limit stopped it before a fixpoint.
    pub hit_limit: bool,
}

struct Search<'t> {
    test: &'t mut dyn FnMut(&Case) -> bool,
    limits: MinimizeLimits,
    start: Instant,
    runs: usize,
    accepted: usize,
}

impl Search<'_> {
    fn exhausted(&self) -> bool {
        self.runs >= self.limits.max_runs || self.start.elapsed() >= self.limits.max_time
    }

    /// Whether `candidate` is valid and still fails the same way.
    fn check(&mut self, candidate: &Case) -> bool {
        if self.exhausted() || candidate.validate().is_err() {
            return false;
        }
        self.runs += 1;
        let ok = (self.test)(candidate);
        if ok {
            self.accepted += 1;
        }
        ok
    }

    fn remaining_runs(&self) -> usize {
        self.limits.max_runs.saturating_sub(self.runs)
    }
}

/// Minimizes `case` under `test` ("still fails with the same signature"), which must hold for
/// `case` itself.
///
/// ```
/// use forcefield_harness::case::{Case, CaseGraph, Op};
/// use forcefield_harness::case::minimize::{minimize, MinimizeLimits};
/// let mut case = Case::new(CaseGraph { num_nodes: 10, edges: vec![], positions: None });
/// case.ops = (0..20).map(|i| Op::Step { count: i + 1 }).collect();
/// // "Fails" whenever some step op runs 7 steps or more.
/// let mut test = |c: &Case| c.ops.iter().any(|op| matches!(op, Op::Step { count } if *count >= 7));
/// let (small, report) = minimize(&case, MinimizeLimits::default(), &mut test);
/// assert_eq!(small.ops, vec![Op::Step { count: 7 }]);
/// assert_eq!(small.graph.num_nodes, 0);
/// assert!(report.after.ops < report.before.ops);
/// ```
pub fn minimize(
    case: &Case,
    limits: MinimizeLimits,
    test: &mut dyn FnMut(&Case) -> bool,
) -> (Case, MinimizeReport) {
    let mut s = Search {
        test,
        limits,
        start: Instant::now(),
        runs: 0,
        accepted: 0,
    };
    let mut best = case.clone();
    loop {
        let before = best.clone();
        best = reduce_ops(&mut s, best);
        best = reduce_op_contents(&mut s, best);
        best = reduce_edges(&mut s, best);
        best = reduce_nodes(&mut s, best);
        best = reduce_params(&mut s, best);
        if best == before || s.exhausted() {
            break;
        }
    }
    let report = MinimizeReport {
        before: CaseSize::of(case),
        after: CaseSize::of(&best),
        runs: s.runs,
        accepted: s.accepted,
        seconds: s.start.elapsed().as_secs_f64(),
        hit_limit: s.exhausted(),
    };
    (best, report)
}

fn reduce_ops(s: &mut Search, case: Case) -> Case {
    let budget = s.remaining_runs();
    let (ops, _) = ddmin(case.ops.clone(), budget, |ops| {
        let candidate = Case {
            ops: ops.to_vec(),
            ..case.clone()
        };
        s.check(&candidate)
    });
    Case { ops, ..case }
}

fn reduce_edges(s: &mut Search, case: Case) -> Case {
    let budget = s.remaining_runs();
    let (edges, _) = ddmin(case.graph.edges.clone(), budget, |edges| {
        let mut candidate = case.clone();
        candidate.graph.edges = edges.to_vec();
        s.check(&candidate)
    });
    let mut out = case;
    out.graph.edges = edges;
    out
}

/// Smaller numbers inside ops: step and node counts, reservations, the `nth` of injected faults,
/// and ddmin over the lists that ops carry.
fn reduce_op_contents(s: &mut Search, mut case: Case) -> Case {
    for i in 0..case.ops.len() {
        let smaller_counts = |c: u64| -> Vec<u64> {
            // Big jumps first, then one less, so a count ends exactly at the failure's boundary.
            let mut v = vec![1, c / 2, c - c / 4, c.saturating_sub(1)];
            v.retain(|&x| x >= 1 && x < c);
            v.dedup();
            v
        };
        // Keep shrinking one number while the case still fails, smallest candidates first.
        loop {
            let op = case.ops[i].clone();
            let candidates: Vec<Op> = match &op {
                Op::Step { count } => smaller_counts(*count)
                    .into_iter()
                    .map(|count| Op::Step { count })
                    .collect(),
                Op::AddNodes {
                    count,
                    positions: None,
                } => smaller_counts(*count)
                    .into_iter()
                    .map(|count| Op::AddNodes {
                        count,
                        positions: None,
                    })
                    .collect(),
                // Seeded positions, whose count can then shrink; or fewer given ones.
                Op::AddNodes {
                    count,
                    positions: Some(p),
                } => std::iter::once(Op::AddNodes {
                    count: *count,
                    positions: None,
                })
                .chain(smaller_counts(*count).into_iter().map(|c| Op::AddNodes {
                    count: c,
                    positions: Some(p[..(c as usize).min(p.len())].to_vec()),
                }))
                .collect(),
                // Lower ids, so that the nodes above them can go.
                Op::RemoveNodes { ids } if ids.iter().any(|&i| i > 0) => {
                    let halved: Vec<u32> = ids.iter().map(|&i| i / 2).collect();
                    vec![
                        Op::RemoveNodes { ids: vec![0] },
                        Op::RemoveNodes { ids: halved },
                    ]
                }
                // An earlier call failing instead: the fault fires closer to the op start.
                Op::Inject { fault } => smaller_counts(u64::from(nth_of(fault)))
                    .into_iter()
                    .map(|nth| Op::Inject {
                        fault: with_nth(fault, u32::try_from(nth).unwrap_or(1)),
                    })
                    .collect(),
                Op::Reserve { nodes, edges } => [(0, *edges), (*nodes, 0), (nodes / 2, edges / 2)]
                    .into_iter()
                    .filter(|&(n, e)| (n, e) != (*nodes, *edges))
                    .map(|(nodes, edges)| Op::Reserve { nodes, edges })
                    .collect(),
                _ => Vec::new(),
            };
            let mut changed = false;
            for candidate_op in candidates {
                let mut candidate = case.clone();
                candidate.ops[i] = candidate_op;
                if s.check(&candidate) {
                    case = candidate;
                    changed = true;
                    break;
                }
            }
            if !changed {
                break;
            }
        }
        let budget = s.remaining_runs();
        match case.ops[i].clone() {
            Op::AddEdges { edges } if edges.len() > 1 => {
                let (kept, _) = ddmin(edges, budget, |e| {
                    let mut candidate = case.clone();
                    candidate.ops[i] = Op::AddEdges { edges: e.to_vec() };
                    s.check(&candidate)
                });
                case.ops[i] = Op::AddEdges { edges: kept };
            }
            Op::RemoveNodes { ids } if ids.len() > 1 => {
                let (kept, _) = ddmin(ids, budget, |ids| {
                    let mut candidate = case.clone();
                    candidate.ops[i] = Op::RemoveNodes { ids: ids.to_vec() };
                    s.check(&candidate)
                });
                case.ops[i] = Op::RemoveNodes { ids: kept };
            }
            _ => {}
        }
    }
    case
}

fn nth_of(fault: &EnvFault) -> u32 {
    match *fault {
        EnvFault::FailAlloc { nth }
        | EnvFault::FailCopy { nth }
        | EnvFault::FailLaunch { nth }
        | EnvFault::LoseContext { nth } => nth,
    }
}

fn with_nth(fault: &EnvFault, nth: u32) -> EnvFault {
    match fault {
        EnvFault::FailAlloc { .. } => EnvFault::FailAlloc { nth },
        EnvFault::FailCopy { .. } => EnvFault::FailCopy { nth },
        EnvFault::FailLaunch { .. } => EnvFault::FailLaunch { nth },
        EnvFault::LoseContext { .. } => EnvFault::LoseContext { nth },
    }
}

/// Removes initial nodes. Node ids in ops are renumbered as if the removed nodes had never been
/// there; a candidate whose ops then name a node that no longer exists is invalid and skipped.
fn reduce_nodes(s: &mut Search, case: Case) -> Case {
    let n0 = case.graph.num_nodes;
    if n0 == 0 || n0 > 100_000 {
        return case;
    }
    let budget = s.remaining_runs();
    let all: Vec<u32> = (0..n0 as u32).collect();
    let (kept, _) = ddmin(all, budget, |keep| match keep_initial_nodes(&case, keep) {
        Some(candidate) => s.check(&candidate),
        None => false,
    });
    keep_initial_nodes(&case, &kept).unwrap_or(case)
}

/// The case with only the initial nodes `keep` (ascending), ids renumbered.
pub(crate) fn keep_initial_nodes(case: &Case, keep: &[u32]) -> Option<Case> {
    let n0 = case.graph.num_nodes;
    let removed = n0 - keep.len() as u64;
    let mut map = vec![None; n0 as usize];
    for (new, &old) in keep.iter().enumerate() {
        *map.get_mut(old as usize)? = Some(new as u32);
    }
    let remap = |x: u32| -> Option<u32> {
        if (x as u64) < n0 {
            map[x as usize]
        } else {
            Some((x as u64 - removed) as u32)
        }
    };
    let remap_edges = |edges: &[Edge]| -> Vec<Edge> {
        edges
            .iter()
            .filter_map(|e| {
                Some(Edge {
                    u: remap(e.u)?,
                    v: remap(e.v)?,
                    w: e.w,
                })
            })
            .collect()
    };
    let mut out = case.clone();
    out.graph.num_nodes = keep.len() as u64;
    out.graph.edges = remap_edges(&case.graph.edges);
    if let Some(p) = &case.graph.positions {
        out.graph.positions = Some(keep.iter().map(|&i| p[i as usize]).collect());
    }
    let mut ops = Vec::with_capacity(case.ops.len());
    for op in &case.ops {
        let op = match op {
            Op::RemoveNodes { ids } => Op::RemoveNodes {
                ids: ids.iter().filter_map(|&i| remap(i)).collect(),
            },
            Op::AddEdges { edges } => Op::AddEdges {
                edges: remap_edges(edges),
            },
            Op::RemoveEdges { pairs } => Op::RemoveEdges {
                pairs: pairs
                    .iter()
                    .filter_map(|&(u, v)| Some((remap(u)?, remap(v)?)))
                    .collect(),
            },
            Op::Sssp { source } => match remap(*source) {
                Some(source) => Op::Sssp { source },
                None => continue,
            },
            // A constraint on a node that is gone goes with it.
            Op::SetPositionConstraint {
                node,
                target,
                stiffness,
            } => match remap(*node) {
                Some(node) => Op::SetPositionConstraint {
                    node,
                    target: *target,
                    stiffness: *stiffness,
                },
                None => continue,
            },
            Op::SetDistanceConstraint { u, v, distance } => match (remap(*u), remap(*v)) {
                (Some(u), Some(v)) => Op::SetDistanceConstraint {
                    u,
                    v,
                    distance: *distance,
                },
                _ => continue,
            },
            other => other.clone(),
        };
        ops.push(op);
    }
    out.ops = ops;
    Some(out)
}

/// Resets each parameter that differs from its default, one at a time, and drops explicit
/// positions.
fn reduce_params(s: &mut Search, mut case: Case) -> Case {
    if case.graph.positions.is_some() {
        let mut candidate = case.clone();
        candidate.graph.positions = None;
        if s.check(&candidate) {
            case = candidate;
        }
    }
    let Some(params) = case.params.clone() else {
        return case;
    };
    let defaults = serde_json::to_value(SimParams::default()).unwrap_or_default();
    let Ok(serde_json::Value::Object(current)) = serde_json::to_value(&params) else {
        return case;
    };
    let mut current = current;
    for (key, default) in defaults.as_object().cloned().unwrap_or_default() {
        if current.get(&key) == Some(&default) {
            continue;
        }
        let mut trial = current.clone();
        trial.insert(key, default);
        let Ok(p) = serde_json::from_value::<SimParams>(serde_json::Value::Object(trial.clone()))
        else {
            continue;
        };
        let mut candidate = case.clone();
        candidate.params = if p == SimParams::default() {
            None
        } else {
            Some(p)
        };
        if s.check(&candidate) {
            case = candidate;
            current = trial;
        }
    }
    case
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseGraph;

    fn case_with(n: u64, edges: Vec<Edge>, ops: Vec<Op>) -> Case {
        let mut c = Case::new(CaseGraph {
            num_nodes: n,
            edges,
            positions: None,
        });
        c.ops = ops;
        c
    }

    #[test]
    fn node_removal_renumbers_every_reference() {
        let c = case_with(
            5,
            vec![Edge::new(0, 4), Edge::new(1, 2)],
            vec![
                Op::AddNodes {
                    count: 2,
                    positions: None,
                },
                Op::AddEdges {
                    edges: vec![Edge::new(4, 6), Edge::new(1, 5)],
                },
                Op::Sssp { source: 1 },
                Op::Sssp { source: 6 },
                Op::RemoveNodes { ids: vec![4, 1] },
            ],
        );
        let k = keep_initial_nodes(&c, &[0, 2, 4]).unwrap();
        assert_eq!(k.graph.num_nodes, 3);
        assert_eq!(k.graph.edges, vec![Edge::new(0, 2)]);
        assert_eq!(
            k.ops[1],
            Op::AddEdges {
                edges: vec![Edge::new(2, 4)]
            }
        );
        assert_eq!(k.ops[2], Op::Sssp { source: 4 });
        assert_eq!(k.ops[3], Op::RemoveNodes { ids: vec![2] });
        assert_eq!(k.ops.len(), 4, "the sssp from a removed node is dropped");
        assert!(k.validate().is_ok());
    }

    #[test]
    fn minimizes_to_the_interacting_parts() {
        // Fails when there is an edge touching node 3 and a step of at least 4.
        let c = case_with(
            12,
            (0..11).map(|i| Edge::new(i, i + 1)).collect(),
            vec![
                Op::Step { count: 10 },
                Op::AddNodes {
                    count: 30,
                    positions: None,
                },
                Op::Reserve {
                    nodes: 100,
                    edges: 100,
                },
                Op::Step { count: 9 },
                Op::ShrinkToFit,
            ],
        );
        let mut test = |c: &Case| {
            let has_edge = c.graph.edges.iter().any(|e| e.u == 3 || e.v == 3);
            let steps = c
                .ops
                .iter()
                .any(|op| matches!(op, Op::Step { count } if *count >= 4));
            has_edge && steps && c.graph.num_nodes > 3
        };
        let (small, report) = minimize(&c, MinimizeLimits::default(), &mut test);
        assert_eq!(small.ops, vec![Op::Step { count: 4 }]);
        assert_eq!(small.graph.edges.len(), 1);
        assert_eq!(
            small.graph.num_nodes, 4,
            "the test needs more than 3 nodes, no more"
        );
        assert!(report.accepted > 0 && report.after.nodes < report.before.nodes);
        assert!(test(&small));
    }

    #[test]
    fn never_accepts_a_candidate_that_does_not_reproduce() {
        let c = case_with(3, vec![Edge::new(0, 1)], vec![Op::Step { count: 2 }]);
        let mut test = |x: &Case| *x == c;
        let (small, report) = minimize(&c, MinimizeLimits::default(), &mut test);
        assert_eq!(small, c);
        assert_eq!(report.accepted, 0);
    }

    #[test]
    fn injected_faults_fire_as_early_as_the_failure_allows() {
        let c = case_with(
            2,
            vec![],
            vec![
                Op::Inject {
                    fault: EnvFault::FailCopy { nth: 9 },
                },
                Op::Step { count: 1 },
            ],
        );
        // "Fails" while a copy fault at least the 3rd copy away precedes a step.
        let mut test = |c: &Case| {
            matches!(c.ops.first(), Some(Op::Inject { fault: EnvFault::FailCopy { nth } }) if *nth >= 3)
                && c.ops.iter().any(|op| matches!(op, Op::Step { .. }))
        };
        let (small, _) = minimize(&c, MinimizeLimits::default(), &mut test);
        assert_eq!(
            small.ops,
            vec![
                Op::Inject {
                    fault: EnvFault::FailCopy { nth: 3 }
                },
                Op::Step { count: 1 }
            ]
        );
    }
}
