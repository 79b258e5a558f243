/*!
Oracles: the invariants checked after every operation of a case.

Each check is a plain function of plain data (positions, an inspection of the grid or the CSR, a
capacity report, distances), so that a test can hand it a deliberately corrupted input and see it fail,
and so that the checks know nothing of planted faults: a fault is found only when it breaks one of
these generic properties. [`check_engine`] gathers the data from an engine and runs the checks that
apply after a given operation.

Every check has a stable name ([`checks`]) that ends up in finding signatures.

Besides the invariants of one engine's state there are checks that compare two computations which
must agree whatever the engine's internals: `restart-equivalence` (an engine rebuilt from another's
checkpoint steps to the same layout: the checkpoint is the whole state), `differential` (CUDA against
a CPU shadow) and `capacity-invariance` (two growth policies). The executor of a case
([`crate::worker::target_case`]) decides when each runs; the comparisons themselves are here.
*/

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use forcefield::{Backend, CsrInspection, Edge, Engine, EngineError, GridInspection};

/// The stable names of the checks.
pub mod checks {
    /// Every coordinate is finite.
    pub const POSITIONS_FINITE: &str = "positions-finite";
    /// After a step, every coordinate is within `±viewport_bounds`.
    pub const POSITIONS_IN_BOUNDS: &str = "positions-in-bounds";
    /// Live counts and buffer lengths do not exceed capacities.
    pub const COUNTS_WITHIN_CAPACITY: &str = "counts-within-capacity";
    /// Sorted keys are non-decreasing and every key lies within the grid.
    pub const SORT_SORTED: &str = "sort-sorted";
    /// Sorted values are a permutation of the nodes.
    pub const SORT_PERMUTATION: &str = "sort-permutation";
    /// Each sorted key is the key of the node beside it: the sort moved keys and values together.
    pub const SORT_PAIRS: &str = "sort-pairs";
    /// Every node lies in exactly one cell range, the range of its key.
    pub const CELL_RANGES: &str = "cell-ranges";
    /// The CSR is well formed and holds exactly the live edges in both directions.
    pub const CSR_VALID: &str = "csr-valid";
    /// SSSP distances equal a CPU Dijkstra, bit for bit.
    pub const SSSP_DIJKSTRA: &str = "sssp-dijkstra";
    /// The same case under another growth policy gives the same positions, bit for bit.
    pub const CAPACITY_INVARIANCE: &str = "capacity-invariance";
    /// Device memory held equals the bytes of the registered buffers (nothing leaked).
    pub const MEMORY_ACCOUNTING: &str = "memory-accounting";
    /// An engine rebuilt from the checkpoint steps to the same positions and velocities.
    pub const RESTART_EQUIVALENCE: &str = "restart-equivalence";
    /// CUDA positions agree with a CPU shadow engine's within [`super::DIFFERENTIAL_TOLERANCE`].
    pub const DIFFERENTIAL: &str = "differential";
}

/// Relative tolerance of comparisons across backends: `|a - b| <= 1e-3 * (1 + |a|)` per coordinate,
/// as the CUDA tests use (ARCHITECTURE.md, "Tolerance CPU vs CUDA").
pub const DIFFERENTIAL_TOLERANCE: f32 = 1e-3;

/// A broken invariant: which check, and what exactly was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// One of [`checks`].
    pub check: &'static str,
    /// One line: the first offending element and its values.
    pub detail: String,
}

impl Violation {
    fn new(check: &'static str, detail: impl Into<String>) -> Self {
        Violation {
            check,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// Result of a check.
pub(crate) type CheckResult = Result<(), Violation>;

/// `positions-finite`.
pub(crate) fn check_positions_finite(positions: &[[f32; 3]]) -> CheckResult {
    match positions
        .iter()
        .position(|p| p.iter().any(|c| !c.is_finite()))
    {
        Some(i) => Err(Violation::new(
            checks::POSITIONS_FINITE,
            format!("node {i} is at {:?}", positions[i]),
        )),
        None => Ok(()),
    }
}

/// `positions-in-bounds`: every coordinate within `±bound` (the integrator clamps to exactly that).
pub(crate) fn check_positions_in_bounds(positions: &[[f32; 3]], bound: f32) -> CheckResult {
    match positions
        .iter()
        // NaN is out of bounds too.
        .position(|p| p.iter().any(|c| c.is_nan() || c.abs() > bound))
    {
        Some(i) => Err(Violation::new(
            checks::POSITIONS_IN_BOUNDS,
            format!(
                "node {i} is at {:?}, outside the viewport of ±{bound}",
                positions[i]
            ),
        )),
        None => Ok(()),
    }
}

/// Capacity-related state of an engine, as plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CapacityReport {
    /// Live nodes.
    pub num_nodes: u64,
    /// Live undirected edges.
    pub num_edges: u64,
    /// Node capacity.
    pub allocated_nodes: u64,
    /// Edge capacity.
    pub allocated_edges: u64,
    /// Every buffer: name, live length, capacity (elements).
    pub buffers: Vec<(String, u64, u64)>,
}

impl CapacityReport {
    /// The report of `engine`.
    pub fn of<Bk: Backend>(engine: &Engine<Bk>) -> Self {
        CapacityReport {
            num_nodes: engine.num_nodes() as u64,
            num_edges: engine.num_edges() as u64,
            allocated_nodes: engine.allocated_nodes() as u64,
            allocated_edges: engine.allocated_edges() as u64,
            buffers: engine
                .buffers()
                .map(|b| (b.name.as_str().to_string(), b.len as u64, b.capacity as u64))
                .collect(),
        }
    }
}

/// `counts-within-capacity`: live counts within class capacities, every buffer's length within its
/// capacity.
pub(crate) fn check_counts(r: &CapacityReport) -> CheckResult {
    let v = |d: String| Err(Violation::new(checks::COUNTS_WITHIN_CAPACITY, d));
    if r.num_nodes > r.allocated_nodes {
        return v(format!(
            "{} nodes live but capacity is {}",
            r.num_nodes, r.allocated_nodes
        ));
    }
    if r.num_edges > r.allocated_edges {
        return v(format!(
            "{} edges live but capacity is {}",
            r.num_edges, r.allocated_edges
        ));
    }
    for (name, len, cap) in &r.buffers {
        if len > cap {
            return v(format!("buffer `{name}` has length {len} > capacity {cap}"));
        }
    }
    Ok(())
}

/// `sort-sorted`, `sort-permutation`, `sort-pairs` and `cell-ranges` on the grid stage of the last
/// step, in that order; the first violation is returned.
pub(crate) fn check_grid(g: &GridInspection) -> CheckResult {
    check_sort_sorted(g)?;
    check_sort_permutation(g)?;
    check_sort_pairs(g)?;
    check_cell_ranges(g)
}

/// `sort-sorted`: keys (before and after the sort) below the cell count, sorted keys non-decreasing.
pub(crate) fn check_sort_sorted(g: &GridInspection) -> CheckResult {
    let cells = g.grid.num_cells() as u64;
    let v = |d: String| Err(Violation::new(checks::SORT_SORTED, d));
    if let Some(i) = g.cell_keys.iter().position(|&k| k as u64 >= cells) {
        return v(format!(
            "node {i} has cell key {} but the grid has {cells} cells",
            g.cell_keys[i]
        ));
    }
    if let Some(i) = g.sorted_keys.iter().position(|&k| k as u64 >= cells) {
        return v(format!(
            "sorted slot {i} has key {} but the grid has {cells} cells",
            g.sorted_keys[i]
        ));
    }
    if let Some(i) = g.sorted_keys.windows(2).position(|w| w[0] > w[1]) {
        return v(format!(
            "sorted keys decrease at slot {}: {} then {}",
            i + 1,
            g.sorted_keys[i],
            g.sorted_keys[i + 1]
        ));
    }
    Ok(())
}

/// `sort-permutation`: the sorted values are each node exactly once.
pub(crate) fn check_sort_permutation(g: &GridInspection) -> CheckResult {
    let n = g.cell_keys.len();
    let v = |d: String| Err(Violation::new(checks::SORT_PERMUTATION, d));
    if g.sorted_nodes.len() != n || g.sorted_keys.len() != n {
        return v(format!(
            "{} sorted keys and {} sorted nodes for {n} nodes",
            g.sorted_keys.len(),
            g.sorted_nodes.len()
        ));
    }
    let mut seen = vec![false; n];
    for (slot, &node) in g.sorted_nodes.iter().enumerate() {
        let Some(s) = seen.get_mut(node as usize) else {
            return v(format!("sorted slot {slot} holds node {node} of {n}"));
        };
        if *s {
            return v(format!("node {node} appears twice (again at slot {slot})"));
        }
        *s = true;
    }
    Ok(())
}

/// `sort-pairs`: `sorted_keys[i] == cell_keys[sorted_nodes[i]]` for every slot, i.e. the sort moved
/// each value with its own key (a sort whose values are not what the keys were computed for passes
/// `sort-sorted` and may pass `sort-permutation`, and still files nodes under other nodes' cells).
pub(crate) fn check_sort_pairs(g: &GridInspection) -> CheckResult {
    let v = |d: String| Err(Violation::new(checks::SORT_PAIRS, d));
    if g.sorted_nodes.len() != g.sorted_keys.len() {
        return v(format!(
            "{} sorted keys but {} sorted nodes",
            g.sorted_keys.len(),
            g.sorted_nodes.len()
        ));
    }
    for (slot, (&key, &node)) in g.sorted_keys.iter().zip(&g.sorted_nodes).enumerate() {
        let Some(&own) = g.cell_keys.get(node as usize) else {
            return v(format!(
                "sorted slot {slot} holds node {node} of {}",
                g.cell_keys.len()
            ));
        };
        if key != own {
            return v(format!(
                "sorted slot {slot} holds node {node} with key {key} but its key is {own}"
            ));
        }
    }
    Ok(())
}

/// `memory-accounting`: the device memory the backend holds equals the bytes of the buffers the
/// registry knows (like memcheck's leak check: memory no registered buffer owns is leaked).
pub fn check_memory_accounting(device_bytes: usize, registry_bytes: usize) -> CheckResult {
    if device_bytes == registry_bytes {
        return Ok(());
    }
    let detail = if device_bytes > registry_bytes {
        format!(
            "the device holds {device_bytes} bytes but the registered buffers own {registry_bytes}: \
             {} bytes leaked",
            device_bytes - registry_bytes
        )
    } else {
        format!(
            "the registered buffers claim {registry_bytes} bytes but the device holds only \
             {device_bytes}"
        )
    };
    Err(Violation::new(checks::MEMORY_ACCOUNTING, detail))
}

/// Whether `b` agrees with the reference `a`: bit for bit when `exact`, else within
/// [`DIFFERENTIAL_TOLERANCE`] relative to `1 + |a|` (two NaNs agree: their difference is not the
/// comparison's business, `positions-finite` reports them).
fn agrees(a: f32, b: f32, exact: bool) -> bool {
    if a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan() {
        return true;
    }
    !exact && (a - b).abs() <= DIFFERENTIAL_TOLERANCE * (1.0 + a.abs())
}

/// The first coordinate where `b` disagrees with `a`, as `(node, axis)`.
fn first_disagreement(a: &[[f32; 3]], b: &[[f32; 3]], exact: bool) -> Option<(usize, usize)> {
    a.iter()
        .zip(b)
        .enumerate()
        .find_map(|(i, (p, q))| (0..3).find(|&k| !agrees(p[k], q[k], exact)).map(|k| (i, k)))
}

/// `restart-equivalence`: the positions and velocities of an engine after a step op equal those of
/// an engine rebuilt from its checkpoint before the op (with the parameters the host holds) and
/// stepped the same count — bit for bit when `exact` (the CPU), within the differential tolerance
/// otherwise. A difference means some state the kernels depend on is not in the checkpoint, or not
/// what the host believes it is.
pub fn check_restart_equivalence(
    original: (&[[f32; 3]], &[[f32; 3]]),
    restarted: (&[[f32; 3]], &[[f32; 3]]),
    exact: bool,
) -> CheckResult {
    let v = |d: String| Err(Violation::new(checks::RESTART_EQUIVALENCE, d));
    for (what, a, b) in [
        ("position", original.0, restarted.0),
        ("velocity", original.1, restarted.1),
    ] {
        if a.len() != b.len() {
            return v(format!(
                "{} {what}s in the engine but {} in the one rebuilt from its checkpoint",
                a.len(),
                b.len()
            ));
        }
        if let Some((i, k)) = first_disagreement(a, b, exact) {
            return v(format!(
                "node {i} {what} axis {k} is {} but {} in the engine rebuilt from the checkpoint \
                 (with the host's parameters)",
                a[i][k], b[i][k]
            ));
        }
    }
    Ok(())
}

/// `differential`: positions on another backend agree with the CPU reference `cpu` within
/// [`DIFFERENTIAL_TOLERANCE`] per coordinate.
pub fn check_differential(cpu: &[[f32; 3]], other: &[[f32; 3]]) -> CheckResult {
    let v = |d: String| Err(Violation::new(checks::DIFFERENTIAL, d));
    if cpu.len() != other.len() {
        return v(format!(
            "{} nodes on the CPU but {} on the device",
            cpu.len(),
            other.len()
        ));
    }
    match first_disagreement(cpu, other, false) {
        Some((i, k)) => v(format!(
            "node {i} axis {k} is {} on the device but {} on the CPU (tolerance {DIFFERENTIAL_TOLERANCE:e} relative)",
            other[i][k], cpu[i][k]
        )),
        None => Ok(()),
    }
}

/// `cell-ranges`: every non-empty cell range `[start, end)` lies within the nodes and holds only its
/// own key, and every sorted slot is covered exactly once.
pub(crate) fn check_cell_ranges(g: &GridInspection) -> CheckResult {
    let n = g.sorted_keys.len();
    let cells = g.grid.num_cells();
    let v = |d: String| Err(Violation::new(checks::CELL_RANGES, d));
    if g.cell_start.len() != cells || g.cell_end.len() != cells {
        return v(format!(
            "{} starts and {} ends for {cells} cells",
            g.cell_start.len(),
            g.cell_end.len()
        ));
    }
    let mut covered = vec![0u32; n];
    for (cell, (&s, &e)) in g.cell_start.iter().zip(&g.cell_end).enumerate() {
        if s == e {
            continue;
        }
        if s > e || e as usize > n {
            return v(format!("cell {cell} has range [{s}, {e}) over {n} nodes"));
        }
        let range = s as usize..e as usize;
        for (slot, (&key, c)) in g.sorted_keys[range.clone()]
            .iter()
            .zip(&mut covered[range])
            .enumerate()
        {
            if key as usize != cell {
                return v(format!(
                    "cell {cell} range [{s}, {e}) holds slot {} of key {key}",
                    s as usize + slot
                ));
            }
            *c += 1;
        }
    }
    if let Some(slot) = covered.iter().position(|&c| c != 1) {
        let node = g.sorted_nodes.get(slot).copied().unwrap_or(u32::MAX);
        return v(format!(
            "sorted slot {slot} (node {node}, key {}) lies in {} cell ranges",
            g.sorted_keys[slot], covered[slot]
        ));
    }
    Ok(())
}

/// `csr-valid`: `row_offsets` has n + 1 entries from 0, non-decreasing, ending at 2·edges; every
/// column is a node; and each row holds exactly the (neighbour, weight) entries the live edges give
/// it, in any order.
pub(crate) fn check_csr(csr: &CsrInspection, num_nodes: u32, edges: &[Edge]) -> CheckResult {
    let n = num_nodes as usize;
    let entries = 2 * edges.len();
    let v = |d: String| Err(Violation::new(checks::CSR_VALID, d));
    let ro = &csr.row_offsets;
    if ro.len() != n + 1 {
        return v(format!("{} row offsets for {n} nodes", ro.len()));
    }
    if ro[0] != 0 {
        return v(format!("row_offsets[0] is {}", ro[0]));
    }
    if let Some(i) = ro.windows(2).position(|w| w[0] > w[1]) {
        return v(format!(
            "row offsets decrease at row {i}: {} then {}",
            ro[i],
            ro[i + 1]
        ));
    }
    if ro[n] as usize != entries {
        return v(format!(
            "row_offsets[{n}] is {} but {} edges need {entries} entries",
            ro[n],
            edges.len()
        ));
    }
    if csr.col_indices.len() != entries || csr.weights.len() != entries {
        return v(format!(
            "{} columns and {} weights for {entries} entries",
            csr.col_indices.len(),
            csr.weights.len()
        ));
    }
    if let Some(i) = csr.col_indices.iter().position(|&c| c as usize >= n) {
        return v(format!(
            "entry {i} has column {} of {n} nodes",
            csr.col_indices[i]
        ));
    }
    let mut expected: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
    for e in edges {
        if e.u as usize >= n || e.v as usize >= n {
            return v(format!("edge {}-{} names a node of {n}", e.u, e.v));
        }
        expected[e.u as usize].push((e.v, e.w.to_bits()));
        expected[e.v as usize].push((e.u, e.w.to_bits()));
    }
    for (row, want) in expected.iter_mut().enumerate() {
        let range = ro[row] as usize..ro[row + 1] as usize;
        let mut got: Vec<(u32, u32)> = csr.col_indices[range.clone()]
            .iter()
            .zip(&csr.weights[range])
            .map(|(&c, &w)| (c, w.to_bits()))
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        if got != *want {
            let show = |x: &[(u32, u32)]| -> Vec<(u32, f32)> {
                x.iter()
                    .take(8)
                    .map(|&(c, w)| (c, f32::from_bits(w)))
                    .collect()
            };
            return v(format!(
                "row {row} holds {:?} but its edges give {:?}",
                show(&got),
                show(want)
            ));
        }
    }
    Ok(())
}

/// Single-source shortest paths on the CPU in `f32`, the reference for the engine's SSSP.
///
/// Sums are taken in `f32` along each path, as the engine's relaxation does. Because `f32` addition
/// of a non-negative weight is monotone, both compute the same least fixpoint, so they agree bit for
/// bit. Unreachable nodes get `f32::INFINITY`.
pub(crate) fn dijkstra(num_nodes: u32, edges: &[Edge], source: u32) -> Vec<f32> {
    #[derive(PartialEq)]
    struct Item(f32, u32);
    impl Eq for Item {}
    impl PartialOrd for Item {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Item {
        // Reversed so that `BinaryHeap` pops the nearest node first.
        fn cmp(&self, other: &Self) -> Ordering {
            other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
        }
    }
    let n = num_nodes as usize;
    let mut adj: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for e in edges {
        if (e.u as usize) < n && (e.v as usize) < n {
            adj[e.u as usize].push((e.v, e.w));
            adj[e.v as usize].push((e.u, e.w));
        }
    }
    let mut dist = vec![f32::INFINITY; n];
    if (source as usize) >= n {
        return dist;
    }
    dist[source as usize] = 0.0;
    let mut heap = BinaryHeap::from([Item(0.0, source)]);
    while let Some(Item(d, u)) = heap.pop() {
        if d > dist[u as usize] {
            continue;
        }
        for &(v, w) in &adj[u as usize] {
            let candidate = d + w;
            if candidate < dist[v as usize] {
                dist[v as usize] = candidate;
                heap.push(Item(candidate, v));
            }
        }
    }
    dist
}

/// `sssp-dijkstra`: the engine's distances from `source` equal [`dijkstra`]'s, bit for bit.
pub(crate) fn check_sssp(
    num_nodes: u32,
    edges: &[Edge],
    source: u32,
    distances: &[f32],
) -> CheckResult {
    let want = dijkstra(num_nodes, edges, source);
    let v = |d: String| Err(Violation::new(checks::SSSP_DIJKSTRA, d));
    if distances.len() != want.len() {
        return v(format!(
            "{} distances for {} nodes",
            distances.len(),
            want.len()
        ));
    }
    match want
        .iter()
        .zip(distances)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        Some(i) => v(format!(
            "distance of node {i} from {source} is {} but Dijkstra gives {}",
            distances[i], want[i]
        )),
        None => Ok(()),
    }
}

/// `capacity-invariance`: two runs of one case under different growth policies end with the same
/// positions, bit for bit.
pub(crate) fn check_capacity_invariance(a: &[[f32; 3]], b: &[[f32; 3]]) -> CheckResult {
    let v = |d: String| Err(Violation::new(checks::CAPACITY_INVARIANCE, d));
    if a.len() != b.len() {
        return v(format!(
            "{} nodes with the default growth policy, {} with the other",
            a.len(),
            b.len()
        ));
    }
    let bits = |p: &[f32; 3]| p.map(f32::to_bits);
    match a.iter().zip(b).position(|(p, q)| bits(p) != bits(q)) {
        Some(i) => v(format!(
            "node {i} ends at {:?} with the default growth policy but at {:?} with the other",
            a[i], b[i]
        )),
        None => Ok(()),
    }
}

/// What the operation just applied was, as far as the oracles care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterOp {
    /// Any op that neither steps nor changes capacity.
    Other,
    /// `step` with a positive count: positions were integrated (and clamped) and the grid rebuilt.
    Step,
    /// `reserve` or `shrink_to_fit`: buffers were reallocated, so the grid stage's data moved.
    Resize,
}

/// What went wrong in [`check_engine`]: a broken invariant, or the engine failing to hand over the
/// data to check.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EngineCheckError {
    /// A check failed.
    Violation(Violation),
    /// Reading state back failed.
    Engine(EngineError),
}

impl From<Violation> for EngineCheckError {
    fn from(v: Violation) -> Self {
        EngineCheckError::Violation(v)
    }
}

impl From<EngineError> for EngineCheckError {
    fn from(e: EngineError) -> Self {
        EngineCheckError::Engine(e)
    }
}

/// Runs the checks that apply after `after` on `engine`: counts within capacity; memory accounting;
/// positions finite always, in bounds after a step; the grid invariants after a step or a resize
/// (while the engine still holds the grid of its last step); the CSR against the live edges.
pub(crate) fn check_engine<Bk: Backend>(
    engine: &mut Engine<Bk>,
    after: AfterOp,
) -> Result<(), EngineCheckError> {
    check_counts(&CapacityReport::of(engine))?;
    check_memory_accounting(engine.device_bytes(), engine.registry_bytes())?;
    let positions = engine.positions()?;
    check_positions_finite(&positions)?;
    if after == AfterOp::Step && engine.num_nodes() > 0 {
        check_positions_in_bounds(&positions, engine.params().viewport_bounds)?;
    }
    if after != AfterOp::Other {
        if let Some(g) = engine.inspect_grid()? {
            check_grid(&g)?;
        }
    }
    let csr = engine.inspect_csr()?;
    let num_nodes = engine.num_nodes();
    check_csr(&csr, num_nodes, engine.edges())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use forcefield::GridSpec;

    /// A consistent grid of 4 nodes in 3 cells: keys [2, 0, 2, 1].
    fn good_grid() -> GridInspection {
        GridInspection {
            grid: GridSpec {
                origin: [0.0; 3],
                cell_size: 1.0,
                dims: [3, 1, 1],
            },
            cell_keys: vec![2, 0, 2, 1],
            sorted_keys: vec![0, 1, 2, 2],
            sorted_nodes: vec![1, 3, 0, 2],
            cell_start: vec![0, 1, 2],
            cell_end: vec![1, 2, 4],
        }
    }

    #[test]
    fn sort_pairs_needs_each_value_beside_its_own_key() {
        check_sort_pairs(&good_grid()).unwrap();
        check_grid(&good_grid()).unwrap();
        // Last step's permutation as values: a permutation, under sorted keys, but not their nodes.
        let mut g = good_grid();
        g.sorted_nodes = vec![0, 1, 2, 3];
        let e = check_sort_pairs(&g).unwrap_err();
        assert_eq!(e.check, checks::SORT_PAIRS);
        assert!(
            e.detail
                .starts_with("sorted slot 0 holds node 0 with key 0"),
            "{e}"
        );
        assert_eq!(check_grid(&g).unwrap_err().check, checks::SORT_PAIRS);
        // A value beyond the nodes is reported, not indexed.
        g.sorted_nodes[1] = 40;
        assert!(check_sort_pairs(&g).is_err());
    }

    #[test]
    fn a_consistent_grid_passes() {
        check_grid(&good_grid()).unwrap();
    }

    #[test]
    fn unsorted_keys_fail_sort_sorted() {
        let mut g = good_grid();
        g.sorted_keys.swap(0, 1);
        assert_eq!(check_grid(&g).unwrap_err().check, checks::SORT_SORTED);
        let mut g = good_grid();
        g.cell_keys[0] = 3;
        assert_eq!(check_grid(&g).unwrap_err().check, checks::SORT_SORTED);
    }

    #[test]
    fn duplicated_or_foreign_nodes_fail_sort_permutation() {
        let mut g = good_grid();
        g.sorted_nodes[3] = 0;
        let e = check_grid(&g).unwrap_err();
        assert_eq!(e.check, checks::SORT_PERMUTATION);
        assert!(e.detail.contains("node 0 appears twice"), "{e}");
        let mut g = good_grid();
        g.sorted_nodes[0] = 9;
        assert_eq!(check_grid(&g).unwrap_err().check, checks::SORT_PERMUTATION);
    }

    #[test]
    fn values_moved_without_their_keys_fail_sort_pairs() {
        // Nodes 1 and 3 exchanged: still a permutation, keys still sorted.
        let mut g = good_grid();
        g.sorted_nodes.swap(0, 1);
        check_sort_permutation(&g).unwrap();
        check_sort_sorted(&g).unwrap();
        let e = check_grid(&g).unwrap_err();
        assert_eq!(e.check, checks::SORT_PAIRS);
        assert_eq!(
            e.detail,
            "sorted slot 0 holds node 3 with key 0 but its key is 1"
        );
        check_sort_pairs(&good_grid()).unwrap();
        // Nodes 0 and 2 share key 2: exchanging them is a different but valid sort.
        let mut g = good_grid();
        g.sorted_nodes.swap(2, 3);
        check_grid(&g).unwrap();
    }

    #[test]
    fn missing_or_overlapping_ranges_fail_cell_ranges() {
        let mut g = good_grid();
        g.cell_end[2] = 3; // slot 3 in no range
        let e = check_grid(&g).unwrap_err();
        assert_eq!(e.check, checks::CELL_RANGES);
        assert!(e.detail.contains("slot 3"), "{e}");
        let mut g = good_grid();
        g.cell_start[1] = 0; // cell 1's range swallows slot 0 of key 0
        assert_eq!(check_grid(&g).unwrap_err().check, checks::CELL_RANGES);
        let mut g = good_grid();
        g.cell_end[2] = 9; // past the nodes
        assert_eq!(check_grid(&g).unwrap_err().check, checks::CELL_RANGES);
        let mut g = good_grid();
        g.cell_end.pop();
        assert_eq!(check_grid(&g).unwrap_err().check, checks::CELL_RANGES);
    }

    fn good_csr() -> (CsrInspection, Vec<Edge>) {
        // Edges 0-1 (w 1) and 1-2 (w 2) on 3 nodes.
        let edges = vec![Edge { u: 0, v: 1, w: 1.0 }, Edge { u: 1, v: 2, w: 2.0 }];
        let csr = CsrInspection {
            row_offsets: vec![0, 1, 3, 4],
            col_indices: vec![1, 2, 0, 1],
            weights: vec![1.0, 2.0, 1.0, 2.0],
        };
        (csr, edges)
    }

    #[test]
    fn csr_checks() {
        let (csr, edges) = good_csr();
        check_csr(&csr, 3, &edges).unwrap();
        let corruptions: [fn(&mut CsrInspection); 7] = [
            |c| c.row_offsets[3] = 3,
            |c| c.row_offsets[0] = 1,
            |c| c.row_offsets.swap(1, 2),
            |c| c.col_indices[0] = 7,
            |c| c.col_indices[0] = 2,
            |c| c.weights[2] = 1.5,
            |c| {
                c.row_offsets.pop();
            },
        ];
        for (k, corrupt) in corruptions.iter().enumerate() {
            let mut c = csr.clone();
            corrupt(&mut c);
            let e = check_csr(&c, 3, &edges).expect_err(&format!("corruption {k}"));
            assert_eq!(e.check, checks::CSR_VALID);
        }
        // A missing edge is caught too.
        assert!(check_csr(&csr, 3, &edges[..1]).is_err());
    }

    #[test]
    fn positions_checks() {
        check_positions_finite(&[[0.0, 1.0, -2.0]]).unwrap();
        let e = check_positions_finite(&[[0.0; 3], [0.0, f32::NAN, 0.0]]).unwrap_err();
        assert_eq!(e.check, checks::POSITIONS_FINITE);
        assert!(e.detail.starts_with("node 1"));
        check_positions_in_bounds(&[[10.0, -10.0, 0.0]], 10.0).unwrap();
        let e = check_positions_in_bounds(&[[10.5, 0.0, 0.0]], 10.0).unwrap_err();
        assert_eq!(e.check, checks::POSITIONS_IN_BOUNDS);
        assert!(check_positions_in_bounds(&[[f32::NAN, 0.0, 0.0]], 10.0).is_err());
    }

    #[test]
    fn counts_checks() {
        let good = CapacityReport {
            num_nodes: 3,
            num_edges: 2,
            allocated_nodes: 4,
            allocated_edges: 2,
            buffers: vec![("pos_in_x".into(), 3, 4)],
        };
        check_counts(&good).unwrap();
        let mut r = good.clone();
        r.num_nodes = 5;
        assert_eq!(
            check_counts(&r).unwrap_err().check,
            checks::COUNTS_WITHIN_CAPACITY
        );
        let mut r = good.clone();
        r.num_edges = 3;
        assert!(check_counts(&r).is_err());
        let mut r = good;
        r.buffers[0].1 = 5;
        let e = check_counts(&r).unwrap_err();
        assert!(e.detail.contains("pos_in_x"), "{e}");
    }

    #[test]
    fn dijkstra_and_sssp_check() {
        let edges = vec![
            Edge { u: 0, v: 1, w: 1.0 },
            Edge { u: 1, v: 2, w: 1.0 },
            Edge { u: 0, v: 2, w: 5.0 },
            Edge { u: 3, v: 3, w: 0.0 },
        ];
        let d = dijkstra(4, &edges, 0);
        assert_eq!(d, vec![0.0, 1.0, 2.0, f32::INFINITY]);
        check_sssp(4, &edges, 0, &d).unwrap();
        let mut wrong = d.clone();
        wrong[2] = 5.0; // the direct edge instead of the shorter path
        let e = check_sssp(4, &edges, 0, &wrong).unwrap_err();
        assert_eq!(e.check, checks::SSSP_DIJKSTRA);
        assert!(e.detail.contains("node 2"), "{e}");
        // A one-ulp difference is a violation: the comparison is bitwise.
        let mut ulp = d;
        ulp[1] = f32::from_bits(ulp[1].to_bits() + 1);
        assert!(check_sssp(4, &edges, 0, &ulp).is_err());
    }

    #[test]
    fn capacity_invariance_is_bitwise() {
        let a = [[1.0, 2.0, 3.0]];
        check_capacity_invariance(&a, &a).unwrap();
        let b = [[1.0, 2.0, f32::from_bits(3.0f32.to_bits() + 1)]];
        assert_eq!(
            check_capacity_invariance(&a, &b).unwrap_err().check,
            checks::CAPACITY_INVARIANCE
        );
        assert!(check_capacity_invariance(&a, &[]).is_err());
    }
}
