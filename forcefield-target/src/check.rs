/*!
Conformance: a fixed script of requests that every target must answer correctly, and a report of
what it does wrong, in plain words.

The script is small on purpose (a dozen nodes): it checks the contract, not the engine's physics,
which is a campaign's work. In order:

1. **handshake** — a name, and only known capability names (unknown ones are a warning);
2. **create** — a 6-node ring at given positions reads back bit for bit, before any step;
3. **step** — positions stay finite, one per node, and something moves;
4. **add nodes** — seeded and given positions; the old nodes do not move; given ones read back;
5. **edges** — added edges, then steps: finite, right count;
6. **remove nodes** — survivors keep their order, renumbered from 0, carrying their positions;
7. **remove edges**, **bad input** — out-of-range ids must be `rejected` and change nothing;
8. **empty graph** — created, stepped, read back as no positions;
9. **capabilities** — each declared one is exercised (SSSP against Dijkstra, counts against the
   script's own, CSR shape, checkpoint then restore continues bit for bit, reserve and shrink change
   nothing observable); each undeclared one must answer `unsupported`, not fail;
10. **determinism** — the whole script run on a second fresh target gives bitwise the same positions.

```
use forcefield_target::{check, Target};
# use forcefield_target::{Capabilities, Edge, Graph, Point, Result, TargetInfo};
# #[derive(Default)] struct Still { n: usize }
# impl Target for Still {
#     fn info(&self) -> TargetInfo { TargetInfo { name: "still".into(), version: "0".into(), capabilities: Capabilities::none() } }
#     fn create(&mut self, g: &Graph, _: Option<&forcefield_target::Params>) -> Result<()> { self.n = g.num_nodes as usize; Ok(()) }
#     fn add_nodes(&mut self, c: u64, _: Option<&[Point]>) -> Result<()> { self.n += c as usize; Ok(()) }
#     fn remove_nodes(&mut self, _: &[u32]) -> Result<()> { Ok(()) }
#     fn add_edges(&mut self, _: &[Edge]) -> Result<()> { Ok(()) }
#     fn remove_edges(&mut self, _: &[(u32, u32)]) -> Result<()> { Ok(()) }
#     fn step(&mut self, _: u64) -> Result<()> { Ok(()) }
#     fn positions(&mut self) -> Result<Vec<Point>> { Ok(vec![[0.0; 3]; self.n]) }
# }
// A target that never moves a node and ignores removals fails in plain words.
let report = check::check(&mut || Ok(Box::new(Still::default()) as Box<dyn Target>));
assert!(!report.passed());
assert!(report.problems.iter().any(|p| p.what.contains("no node moved")));
```
*/

use std::collections::BTreeSet;
use std::fmt;

use crate::target::{Capability, Edge, EnvFault, Graph, Point, Target, TargetError, TargetInfo};

/// Something the target does wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The step of the script (`"remove nodes"`).
    pub step: String,
    /// What is wrong, in plain words.
    pub what: String,
}

/// What the conformance check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The target's handshake, when it got that far.
    pub info: Option<TargetInfo>,
    /// Steps of the script that passed.
    pub passed_steps: Vec<String>,
    /// Capabilities not declared (their checks did not run).
    pub skipped: Vec<Capability>,
    /// Things that are not wrong but worth saying (an unknown capability name).
    pub warnings: Vec<String>,
    /// Defects, in script order.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether the target conforms (no problem).
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(info) = &self.info {
            writeln!(
                f,
                "target: {} {} (capabilities: {})",
                info.name, info.version, info.capabilities
            )?;
        }
        for step in &self.passed_steps {
            writeln!(f, "ok      {step}")?;
        }
        for c in &self.skipped {
            writeln!(f, "skipped {c} (not declared)")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning {w}")?;
        }
        for p in &self.problems {
            writeln!(f, "FAILED  {}: {}", p.step, p.what)?;
        }
        if self.passed() {
            write!(f, "conformant")
        } else {
            write!(f, "{} problem(s)", self.problems.len())
        }
    }
}

/// Makes a fresh target (a new process, or a new in-process engine).
pub type MakeTarget<'a> = dyn FnMut() -> Result<Box<dyn Target>, TargetError> + 'a;

/// Runs the conformance script on targets made by `make` (it is called twice: the determinism
/// check compares two fresh runs).
pub fn check(make: &mut MakeTarget<'_>) -> CheckReport {
    let mut report = CheckReport::default();
    let mut first = match make() {
        Ok(t) => t,
        Err(e) => {
            report.problems.push(Problem {
                step: "handshake".into(),
                what: format!("the target could not be started: {e}"),
            });
            return report;
        }
    };
    let info = first.info();
    report.info = Some(info.clone());
    let mut ok = true;
    if info.name.trim().is_empty() {
        report.problems.push(Problem {
            step: "handshake".into(),
            what: "the target gives no name".into(),
        });
        ok = false;
    }
    if ok {
        report.passed_steps.push("handshake".into());
    }
    report.skipped = Capability::ALL
        .into_iter()
        .filter(|c| !info.capabilities.has(*c))
        .collect();

    let first_run = Script::new(&mut report, &info).run(first.as_mut());
    drop(first);
    let Some(first_positions) = first_run else {
        return report;
    };

    // Determinism: the same script on a fresh target, with its findings discarded (they are the
    // first run's), must end at the same bits.
    let second = make().map_err(|e| e.to_string()).and_then(|mut t| {
        let mut scratch = CheckReport::default();
        Script::new(&mut scratch, &info)
            .run(t.as_mut())
            .ok_or_else(|| "the second run failed where the first did not".to_string())
    });
    match second {
        Ok(p) if bits(&p) == bits(&first_positions) => {
            report.passed_steps.push("determinism".into());
        }
        Ok(p) => report.problems.push(Problem {
            step: "determinism".into(),
            what: format!(
                "two runs of the same requests on fresh targets end at different positions ({})",
                first_difference(&first_positions, &p)
            ),
        }),
        Err(e) => report.problems.push(Problem {
            step: "determinism".into(),
            what: e,
        }),
    }
    report
}

fn bits(p: &[Point]) -> Vec<[u32; 3]> {
    p.iter()
        .map(|p| [p[0].to_bits(), p[1].to_bits(), p[2].to_bits()])
        .collect()
}

fn first_difference(a: &[Point], b: &[Point]) -> String {
    if a.len() != b.len() {
        return format!("{} nodes against {}", a.len(), b.len());
    }
    match bits(a).iter().zip(bits(b)).position(|(x, y)| *x != y) {
        Some(i) => format!("node {i}: {:?} against {:?}", a[i], b[i]),
        None => "no difference".into(),
    }
}

/// The script's own model of the graph: node count and edges, edited by the case format's rules.
struct Model {
    nodes: u32,
    edges: Vec<Edge>,
}

impl Model {
    fn remove_nodes(&mut self, ids: &[u32]) {
        let gone: BTreeSet<u32> = ids.iter().copied().collect();
        let renumber: Vec<Option<u32>> = {
            let mut next = 0;
            (0..self.nodes)
                .map(|i| {
                    (!gone.contains(&i)).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        };
        self.edges = self
            .edges
            .iter()
            .filter_map(|e| {
                Some(Edge {
                    u: renumber[e.u as usize]?,
                    v: renumber[e.v as usize]?,
                    w: e.w,
                })
            })
            .collect();
        self.nodes -= gone.iter().filter(|&&i| i < self.nodes).count() as u32;
    }

    fn remove_edges(&mut self, pairs: &[(u32, u32)]) {
        self.edges
            .retain(|e| !pairs.iter().any(|&(a, b)| e.joins(a, b)));
    }

    /// Dijkstra over the model, in f64 (the target's f32 sums are compared with a tolerance).
    fn distances(&self, source: u32) -> Vec<f64> {
        let n = self.nodes as usize;
        let mut dist = vec![f64::INFINITY; n];
        let mut done = vec![false; n];
        dist[source as usize] = 0.0;
        for _ in 0..n {
            let Some(u) = (0..n)
                .filter(|&i| !done[i] && dist[i].is_finite())
                .min_by(|&a, &b| dist[a].total_cmp(&dist[b]))
            else {
                break;
            };
            done[u] = true;
            for e in &self.edges {
                let (a, b) = (e.u as usize, e.v as usize);
                for (from, to) in [(a, b), (b, a)] {
                    if from == u && dist[u] + f64::from(e.w) < dist[to] {
                        dist[to] = dist[u] + f64::from(e.w);
                    }
                }
            }
        }
        dist
    }
}

/// One run of the script, writing problems into a report.
struct Script<'r> {
    report: &'r mut CheckReport,
    info: TargetInfo,
    model: Model,
}

/// Why the script stopped early: the target is gone (died, hung) or the rest would be noise.
struct Abort;

impl<'r> Script<'r> {
    fn new(report: &'r mut CheckReport, info: &TargetInfo) -> Self {
        Script {
            report,
            info: info.clone(),
            model: Model {
                nodes: 0,
                edges: Vec::new(),
            },
        }
    }

    fn problem(&mut self, step: &str, what: impl Into<String>) {
        self.report.problems.push(Problem {
            step: step.into(),
            what: what.into(),
        });
    }

    /// An operation that must succeed; a failure is a problem, and ends the script when the
    /// target is gone or the state is unknown.
    fn must<T>(&mut self, step: &str, what: &str, r: Result<T, TargetError>) -> Result<T, Abort> {
        r.map_err(|e| {
            let why = match &e {
                TargetError::Rejected(m) => {
                    format!("`{what}` was rejected, but the input is valid: {m}")
                }
                TargetError::Unsupported(m) => {
                    format!("`{what}` is required, but the target answers unsupported: {m}")
                }
                other => format!("`{what}` failed: {other}"),
            };
            self.problem(step, why);
            Abort
        })
    }

    /// Reads positions and checks their count and finiteness.
    fn positions(&mut self, step: &str, t: &mut dyn Target) -> Result<Vec<Point>, Abort> {
        let p = self.must(step, "positions", t.positions())?;
        if p.len() != self.model.nodes as usize {
            self.problem(
                step,
                format!(
                    "positions returns {} positions for {} nodes",
                    p.len(),
                    self.model.nodes
                ),
            );
            return Err(Abort);
        }
        if let Some(i) = p.iter().position(|q| q.iter().any(|c| !c.is_finite())) {
            self.problem(
                step,
                format!("node {i} has a non-finite position {:?}", p[i]),
            );
            return Err(Abort);
        }
        Ok(p)
    }

    fn same(&mut self, step: &str, what: &str, expected: &[Point], got: &[Point]) -> bool {
        if bits(expected) == bits(got) {
            return true;
        }
        let detail = first_difference(expected, got);
        self.problem(step, format!("{what} ({detail})"));
        false
    }

    /// A request that must be refused cleanly, changing nothing.
    fn refused(
        &mut self,
        step: &str,
        what: &str,
        r: Result<(), TargetError>,
        t: &mut dyn Target,
        before: &[Point],
    ) -> Result<(), Abort> {
        match r {
            Err(TargetError::Rejected(_)) => {}
            Ok(()) => self.problem(step, format!("`{what}` was accepted; it must be rejected")),
            Err(TargetError::Unsupported(m)) => self.problem(
                step,
                format!("`{what}` answered unsupported ({m}); bad input must be rejected"),
            ),
            Err(e) => {
                self.problem(step, format!("`{what}` must be rejected cleanly, but: {e}"));
                if e.is_defect() && !matches!(e, TargetError::Internal(_)) {
                    return Err(Abort);
                }
            }
        }
        let after = self.positions(step, t)?;
        self.same(
            step,
            &format!("the refused `{what}` changed the positions"),
            before,
            &after,
        );
        Ok(())
    }

    fn pass(&mut self, step: &str, problems_before: usize) {
        if self.report.problems.len() == problems_before {
            self.report.passed_steps.push(step.into());
        }
    }

    /// Runs the script; the final positions when it got to the end.
    fn run(mut self, t: &mut dyn Target) -> Option<Vec<Point>> {
        self.script(t).ok()
    }

    fn script(&mut self, t: &mut dyn Target) -> Result<Vec<Point>, Abort> {
        // A ring of six at distinct positions in the z = 0 plane (2-D engines read back the same).
        let ring: Vec<Point> = (0..6)
            .map(|i| {
                let a = i as f32;
                [a * 1.5 - 3.0, (a * 0.7).sin() * 2.0, 0.0]
            })
            .collect();
        let edges: Vec<Edge> = (0..6).map(|i| Edge::new(i, (i + 1) % 6)).collect();
        let step = "create";
        let n0 = self.report.problems.len();
        self.must(
            step,
            "create",
            t.create(
                &Graph {
                    num_nodes: 6,
                    edges: edges.clone(),
                    positions: Some(ring.clone()),
                },
                None,
            ),
        )?;
        self.model = Model { nodes: 6, edges };
        let p = self.positions(step, t)?;
        self.same(
            step,
            "positions given at creation do not read back unchanged before any step",
            &ring,
            &p,
        );
        self.pass(step, n0);

        let step = "step";
        let n0 = self.report.problems.len();
        self.must(step, "step 10", t.step(10))?;
        let moved = self.positions(step, t)?;
        if bits(&moved) == bits(&p) {
            self.problem(
                step,
                "no node moved in 10 steps of a ring laid out as a zigzag",
            );
        }
        self.must(step, "step 0", t.step(0))?;
        let still = self.positions(step, t)?;
        self.same(step, "`step 0` moved nodes", &moved, &still);
        self.pass(step, n0);

        let step = "add nodes";
        let n0 = self.report.problems.len();
        self.must(step, "add_nodes 3 (seeded positions)", t.add_nodes(3, None))?;
        self.model.nodes += 3;
        let p = self.positions(step, t)?;
        self.same(
            step,
            "adding nodes moved the existing ones",
            &still,
            &p[..6],
        );
        let given = [[4.0, -1.0, 0.0], [-4.5, 2.5, 0.0]];
        self.must(
            step,
            "add_nodes 2 at given positions",
            t.add_nodes(2, Some(&given)),
        )?;
        self.model.nodes += 2;
        let p2 = self.positions(step, t)?;
        self.same(
            step,
            "nodes added at given positions do not read back at them",
            &given,
            &p2[9..],
        );
        self.same(step, "adding nodes moved the existing ones", &p, &p2[..9]);
        self.pass(step, n0);

        let step = "add edges";
        let n0 = self.report.problems.len();
        let more = [
            Edge::new(6, 7),
            Edge::new(7, 8),
            Edge {
                u: 9,
                v: 10,
                w: 2.0,
            },
            Edge::new(0, 9),
            Edge::new(3, 3),
            Edge::new(6, 7),
        ];
        self.must(step, "add_edges", t.add_edges(&more))?;
        self.model.edges.extend_from_slice(&more);
        let p = self.positions(step, t)?;
        self.same(step, "adding edges moved nodes", &p2, &p);
        self.must(step, "step 5", t.step(5))?;
        let p = self.positions(step, t)?;
        self.pass(step, n0);

        let step = "remove nodes";
        let n0 = self.report.problems.len();
        let gone = [1, 4, 4];
        self.must(step, "remove_nodes [1, 4, 4]", t.remove_nodes(&gone))?;
        self.model.remove_nodes(&gone);
        let survivors: Vec<Point> = p
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1 && *i != 4)
            .map(|(_, q)| *q)
            .collect();
        let after = self.positions(step, t)?;
        self.same(
            step,
            "after removing nodes 1 and 4, the survivors are not renumbered in order carrying their positions",
            &survivors,
            &after,
        );
        self.must(step, "step 5", t.step(5))?;
        let after = self.positions(step, t)?;
        self.pass(step, n0);

        let step = "remove edges";
        let n0 = self.report.problems.len();
        // After the removal, old 9-10 is 7-8 and old 0-9 is 0-7.
        let pairs = [(8, 7), (0, 7), (2, 5)];
        self.must(step, "remove_edges", t.remove_edges(&pairs))?;
        self.model.remove_edges(&pairs);
        let p = self.positions(step, t)?;
        self.same(step, "removing edges moved nodes", &after, &p);
        self.must(step, "step 5", t.step(5))?;
        let p = self.positions(step, t)?;
        self.pass(step, n0);

        let step = "bad input";
        let n0 = self.report.problems.len();
        let n = self.model.nodes;
        let r = t.remove_nodes(&[n + 100]);
        self.refused(step, "remove_nodes with an id past the last node", r, t, &p)?;
        let r = t.add_edges(&[Edge::new(0, n)]);
        self.refused(step, "add_edges to a node that does not exist", r, t, &p)?;
        let r = t.add_nodes(2, Some(&[[0.0; 3]]));
        self.refused(step, "add_nodes 2 with one position", r, t, &p)?;
        self.pass(step, n0);

        self.capabilities(t, &p)?;
        let final_positions = self.positions("capabilities", t)?;

        let step = "empty graph";
        let n0 = self.report.problems.len();
        self.must(
            step,
            "create with 0 nodes",
            t.create(&Graph::default(), None),
        )?;
        self.model = Model {
            nodes: 0,
            edges: Vec::new(),
        };
        self.must(step, "step 3 on an empty graph", t.step(3))?;
        self.positions(step, t)?;
        self.pass(step, n0);
        Ok(final_positions)
    }

    fn capabilities(&mut self, t: &mut dyn Target, p: &[Point]) -> Result<(), Abort> {
        let caps = self.info.capabilities.clone();
        let n = self.model.nodes;
        for c in Capability::ALL {
            let step = format!("capability {c}");
            let step = step.as_str();
            let n0 = self.report.problems.len();
            if !caps.has(c) {
                // An undeclared operation must answer unsupported (or work), never fail.
                let r = match c {
                    Capability::Params => t.set_params(&Default::default()),
                    Capability::Capacity => t.shrink_to_fit(),
                    Capability::Sssp => t.sssp(0).map(|_| ()),
                    Capability::Constraints => t.clear_constraints(),
                    Capability::Counts => t.counts().map(|_| ()),
                    Capability::DeviceMemory => t.device_bytes().map(|_| ()),
                    Capability::Grid => t.grid().map(|_| ()),
                    Capability::Csr => t.csr().map(|_| ()),
                    Capability::Checkpoint => t.checkpoint().map(|_| ()),
                    Capability::Velocities => t.velocities().map(|_| ()),
                    Capability::Attributes => t.attributes().map(|_| ()),
                    Capability::Buffers => t.buffers().map(|_| ()),
                    Capability::Inject => continue,
                };
                if let Err(e) = r {
                    if e.is_defect() {
                        self.problem(
                            step,
                            format!("undeclared, so it must answer unsupported, but: {e}"),
                        );
                        if !matches!(e, TargetError::Internal(_)) {
                            return Err(Abort);
                        }
                    }
                }
                let now = self.positions(step, t)?;
                self.same(
                    step,
                    "an undeclared operation changed the positions",
                    p,
                    &now,
                );
                continue;
            }
            match c {
                Capability::Params => {
                    self.must(step, "set_params {}", t.set_params(&Default::default()))?;
                    let now = self.positions(step, t)?;
                    self.same(step, "`set_params` moved nodes", p, &now);
                }
                Capability::Capacity => {
                    self.must(step, "reserve 64 64", t.reserve(64, 64))?;
                    let now = self.positions(step, t)?;
                    self.same(step, "`reserve` moved nodes", p, &now);
                    self.must(step, "shrink_to_fit", t.shrink_to_fit())?;
                    let now = self.positions(step, t)?;
                    self.same(step, "`shrink_to_fit` moved nodes", p, &now);
                }
                Capability::Sssp => {
                    let d = self.must(step, "sssp 0", t.sssp(0))?;
                    let want = self.model.distances(0);
                    if d.len() != want.len() {
                        self.problem(
                            step,
                            format!("sssp returns {} distances for {n} nodes", d.len()),
                        );
                    } else if let Some(i) = (0..d.len()).find(|&i| {
                        let (got, want) = (f64::from(d[i]), want[i]);
                        !(got == want || (got - want).abs() <= 1e-5 * (1.0 + want.abs()))
                    }) {
                        self.problem(
                            step,
                            format!(
                                "sssp from node 0 gives node {i} the distance {}, the shortest path is {}",
                                d[i], want[i]
                            ),
                        );
                    }
                }
                Capability::Constraints => {
                    self.must(
                        step,
                        "set_position_constraint",
                        t.set_position_constraint(0, [0.0; 3], 1.0),
                    )?;
                    self.must(
                        step,
                        "set_distance_constraint",
                        t.set_distance_constraint(0, 1, 2.0),
                    )?;
                    let now = self.positions(step, t)?;
                    self.same(step, "setting constraints moved nodes", p, &now);
                    self.must(step, "clear_constraints", t.clear_constraints())?;
                }
                Capability::Counts => {
                    let counts = self.must(step, "counts", t.counts())?;
                    let edges = self.model.edges.len() as u64;
                    if counts.nodes != u64::from(n) || counts.edges != edges {
                        self.problem(
                            step,
                            format!(
                                "counts says {} nodes and {} edges; there are {n} and {edges}",
                                counts.nodes, counts.edges
                            ),
                        );
                    }
                    if counts.node_capacity.is_some_and(|c| c < counts.nodes)
                        || counts.edge_capacity.is_some_and(|c| c < counts.edges)
                    {
                        self.problem(step, format!("a capacity below its count: {counts:?}"));
                    }
                }
                Capability::DeviceMemory => {
                    self.must(step, "device_bytes", t.device_bytes())?;
                }
                Capability::Grid => {
                    if let Some(g) = self.must(step, "grid", t.grid())? {
                        let cells = g.dims.iter().map(|&d| u64::from(d)).product::<u64>();
                        let mut order = g.order.clone();
                        order.sort_unstable();
                        if g.keys.len() != n as usize
                            || order != (0..n).collect::<Vec<_>>()
                            || g.cell_start.len() as u64 != cells
                            || g.cell_end.len() as u64 != cells
                        {
                            self.problem(
                                step,
                                "the grid stage is not one key per node, a permutation of the nodes, and one range per cell",
                            );
                        }
                    }
                }
                Capability::Csr => {
                    let csr = self.must(step, "csr", t.csr())?;
                    let entries = 2 * self.model.edges.len();
                    if csr.row_offsets.len() != n as usize + 1
                        || csr.col_indices.len() != entries
                        || csr.weights.len() != entries
                        || csr.row_offsets.last().map(|&x| x as usize) != Some(entries)
                    {
                        self.problem(
                            step,
                            format!(
                                "the CSR should have {} row offsets ending at {entries} and {entries} entries; it has {} offsets and {} entries",
                                n + 1,
                                csr.row_offsets.len(),
                                csr.col_indices.len()
                            ),
                        );
                    }
                }
                Capability::Checkpoint => {
                    let state = self.must(step, "checkpoint", t.checkpoint())?;
                    self.must(step, "step 3", t.step(3))?;
                    let ahead = self.positions(step, t)?;
                    self.must(step, "restore", t.restore(&state))?;
                    let back = self.positions(step, t)?;
                    self.same(
                        step,
                        "`restore` does not bring back the checkpoint's positions",
                        p,
                        &back,
                    );
                    self.must(step, "step 3", t.step(3))?;
                    let again = self.positions(step, t)?;
                    self.same(
                        step,
                        "3 steps after `restore` differ from the 3 steps after `checkpoint`",
                        &ahead,
                        &again,
                    );
                    self.must(step, "restore", t.restore(&state))?;
                }
                Capability::Velocities => {
                    let v = self.must(step, "velocities", t.velocities())?;
                    if v.len() != n as usize || v.iter().flatten().any(|x| !x.is_finite()) {
                        self.problem(
                            step,
                            format!("{} velocities for {n} nodes, or one not finite", v.len()),
                        );
                    }
                }
                Capability::Attributes => {
                    let a = self.must(step, "attributes", t.attributes())?;
                    let entries = 2 * self.model.edges.len();
                    if a.masses.len() != n as usize
                        || a.anchors.len() != n as usize
                        || a.edge_targets.len() != entries
                    {
                        self.problem(
                            step,
                            format!(
                                "attributes should have {n} masses and anchors and {entries} edge targets; they have {}, {} and {}",
                                a.masses.len(),
                                a.anchors.len(),
                                a.edge_targets.len()
                            ),
                        );
                    }
                }
                Capability::Buffers => {
                    let buffers = self.must(step, "buffers", t.buffers())?;
                    if let Some(b) = buffers.iter().find(|b| b.len > b.capacity) {
                        self.problem(
                            step,
                            format!(
                                "buffer `{}` has {} live elements in an allocation of {}",
                                b.name, b.len, b.capacity
                            ),
                        );
                    }
                }
                Capability::Inject => {
                    // What a fault fails is the target's business; arming one must be accepted,
                    // and an absurdly late one changes nothing here.
                    self.must(
                        step,
                        "inject fail-alloc nth 64",
                        t.inject(&EnvFault::FailAlloc { nth: 64 }),
                    )?;
                    // Optional: a count of the faults that fired, or `unsupported` (the driver
                    // then takes an internal error while a fault is armed for the fault's).
                    match t.injections_fired() {
                        Ok(_) | Err(TargetError::Unsupported(_)) => {}
                        Err(e) => {
                            self.problem(
                                step,
                                format!(
                                    "`injections_fired` must answer a count or unsupported, but: {e}"
                                ),
                            );
                            if !matches!(e, TargetError::Internal(_) | TargetError::Rejected(_)) {
                                return Err(Abort);
                            }
                        }
                    }
                }
            }
            self.pass(step, n0);
        }
        Ok(())
    }
}
