/*!
The physics reference: the documented force law computed by brute force, in `f64`, beside the
engine's kernels, and compared with one engine step (the `physics` oracle).

The model ([`crate::worker::model`]) says what each op must leave behind, but not where a step moves the
nodes: a force that is wrong but finite and deterministic passes every other check (both backends,
both growth policies and a restarted engine compute the same wrong numbers). This module computes a
step from the law as ARCHITECTURE.md and the design brief state it, O(n²) over all pairs, sharing
no code with the kernels but two hash functions that define the law's inputs (the seeded direction
of coincident pairs, [`coincident_offset`]):

* repulsion between every pair `i != j` with `|d|² < repulsion_cutoff²` **whose cells are
  neighbours** (each grid coordinate differs by at most one: the 27-cell stencil truncates the law,
  by design, when cells are smaller than the cutoff), `repel_k · d / (|d|² + ε)^{3/2}`, plus
  `repel_k · (r - s) / (r · s) · d` when `s = sqrt(|d|² + ε) < separation_radius = r`;
* springs over the CSR entries of `i`: `spring_k · (|d| - rest) · w / |d| · d` (rest stretched by
  `sssp_alpha · |dist_i - dist_j|` with `SSSP_REST_LENGTH`), skipped at `|d| = 0`;
* gravity `-center_gravity_k · p`;
* constraints: `k · (anchor - p)` and `(|d| - target) / |d| · d` per constrained entry, capped at
  `constraint_max_force_per_node`, times the ramp;
* integration: force capped at `max_force`, `v = (v + F dt / m) · damping` (warm-up blended),
  velocity capped at `max_velocity`, `x += v dt`, clamped to `±viewport_bounds`.

# Tolerance

The engine sums in `f32`, in its own order; the reference in `f64`. With `u = 2^-24`, for node `i`
with `m` force terms `f_t` (magnitudes summing to `S`):

* each term's own rounding is at most `16 u |f_t|` (about ten operations), and the rounding of its
  inputs (`d` is a difference of two `f32` positions: off by up to `δ = 2 √3 u max(|p_i|, |p_j|)`)
  moves it by at most `4 |f_t| / |d| · δ` for repulsion (the law is homogeneous of degree ≤ 1 in
  `d` near its peak, so its derivative is within `2 |f| / |d|`; doubled) and by
  `k_s |w| ((2 + rest / |d|) δ + 2 u (|d| + rest))` for a spring (`|d| - rest` cancels);
* recursive summation of `m` terms adds at most `m u S` (the standard `γ_m` bound);
* a pair within `δ₂ = 2 |d| δ + 8 u cutoff²` of the cutoff may be in or out: its whole term counts;
* the force cap, the velocity cap and the clamp are 2-Lipschitz at most: each doubles the error
  carried through it.

So `ε_F = 2 (Σ err_t + m u S)`, `ε_v = 2 (damp dt / m · ε_F + 4 u damp (|v| + |F| dt / m))`,
`ε_x = 2 ε_v dt + 2 u (|x| + |v| dt)`, and a coordinate is accepted within `4 ε_x` (a margin
for the approximations above). A repulsion scaled by 1.5 moves a node by `0.5 |F_rep| dt² / m`:
orders of magnitude beyond `ε_x` whenever repulsion is not negligible.

Thermal noise is not modelled (a case with it is not checked): it is a hash, not a law.
*/

use forcefield::backend::cpu::kernels::coincident_offset;
use forcefield::params::features;
use forcefield::{Checkpoint, GridSpec, SimParams};

use crate::worker::oracle::Violation;

/// The check name.
pub const PHYSICS: &str = "physics";

/// Most live nodes of a case the physics reference checks (it is O(n²)).
pub const PHYSICS_MAX_NODES: u32 = 64;

const U: f64 = 1.0 / 16_777_216.0;

/// Where one node should be after the step, and how far the engine may be from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    /// The reference position.
    pub position: [f64; 3],
    /// The accepted distance per coordinate.
    pub tolerance: [f64; 3],
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(a: [f64; 3]) -> f64 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

fn add_scaled(acc: &mut [f64; 3], s: f64, d: [f64; 3]) {
    for k in 0..3 {
        acc[k] += s * d[k];
    }
}

fn wide(p: [f32; 3]) -> [f64; 3] {
    p.map(f64::from)
}

/// `|p_j - p_i|` as the kernels compute it in `f32`: whether it is zero decides whether a spring or
/// a distance constraint acts at all (`|d|² underflows for |d| < 1e-19`, and the law skips the term).
fn f32_dist(pi: [f32; 3], pj: [f32; 3]) -> f32 {
    let d = [pj[0] - pi[0], pj[1] - pi[1], pj[2] - pi[2]];
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Below this `f32` distance a term's direction is computed from subnormal components: its whole
/// magnitude counts as possible error.
const TINY_DIST: f32 = 1e-15;

fn max_abs(p: [f64; 3]) -> f64 {
    p.iter().fold(0.0f64, |m, c| m.max(c.abs()))
}

/// The grid cell of a coordinate as the law defines it (`floor((p - origin) / size)`, clamped), in
/// the `f32` arithmetic of the definition, so that a node on a cell face falls where the grid says.
fn cell(p: f32, origin: f32, size: f32, dim: u32) -> i64 {
    let f = ((p - origin) / size).floor();
    if f > 0.0 {
        (f as i64).min(dim as i64 - 1)
    } else {
        0
    }
}

/// Whether the reference applies to a state with these parameters: not with thermal noise.
pub fn applies(params: &SimParams, num_nodes: u32) -> bool {
    num_nodes > 0
        && num_nodes <= PHYSICS_MAX_NODES
        && !(params.feature_flags & features::THERMAL_NOISE != 0 && params.temperature > 0.0)
}

/// One step of the documented law from the state `c` (the state after the last completed op),
/// with the grid the step used.
pub fn reference_step(c: &Checkpoint, grid: &GridSpec) -> Vec<Expected> {
    let p = &c.params;
    let n = c.num_nodes as usize;
    let frames = p.constraint_ramp_frames;
    let ramp = if frames == 0 {
        1.0f32
    } else {
        let since = c.iteration.saturating_sub(c.constraints_since) + 1;
        (since as f32 / frames as f32).min(1.0)
    };
    let kp = p.kernel_params(c.iteration, ramp);
    let flags = p.feature_flags;
    let pos: Vec<[f64; 3]> = c.positions.iter().copied().map(wide).collect();
    let cells: Vec<[i64; 3]> = c
        .positions
        .iter()
        .map(|q| [0, 1, 2].map(|k| cell(q[k], grid.origin[k], grid.cell_size, grid.dims[k])))
        .collect();
    // Both directions of every edge, as the CSR holds them.
    let mut rows: Vec<Vec<(usize, f64, f64)>> = vec![Vec::new(); n];
    for (k, e) in c.edges.iter().enumerate() {
        let t = f64::from(c.edge_targets.get(k).copied().unwrap_or(-1.0));
        if let Some(r) = rows.get_mut(e.u as usize) {
            r.push((e.v as usize, f64::from(e.w), t));
        }
        if let Some(r) = rows.get_mut(e.v as usize) {
            r.push((e.u as usize, f64::from(e.w), t));
        }
    }
    let (repel_k, eps) = (
        f64::from(p.repel_k),
        f64::from(p.repulsion_softening_epsilon),
    );
    let cutoff2 = f64::from(p.repulsion_cutoff) * f64::from(p.repulsion_cutoff);
    let sep = f64::from(p.separation_radius);
    let (dt, damp) = (f64::from(kp.dt), f64::from(kp.damping));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pi = pos[i];
        let mut f = [0.0f64; 3];
        let (mut terms, mut magnitudes, mut errors) = (0usize, 0.0f64, 0.0f64);
        if flags & features::REPULSION != 0 {
            for j in 0..n {
                if j == i || (0..3).any(|k| (cells[i][k] - cells[j][k]).abs() > 1) {
                    continue;
                }
                let mut d = sub(pi, pos[j]);
                if d == [0.0; 3] {
                    d = wide(coincident_offset(&kp, i, j));
                }
                let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                let delta = 2.0 * 3f64.sqrt() * U * max_abs(pi).max(max_abs(pos[j]));
                let borderline =
                    (d2 - cutoff2).abs() <= 2.0 * d2.sqrt() * delta + 8.0 * U * cutoff2;
                if d2 >= cutoff2 && !borderline {
                    continue;
                }
                let soft2 = d2 + eps;
                let soft = soft2.sqrt();
                let mut scale = repel_k / (soft2 * soft);
                if sep > 0.0 && soft < sep {
                    scale += repel_k * (sep - soft) / (sep * soft);
                }
                let dn = d2.sqrt();
                let magnitude = scale.abs() * dn;
                if d2 < cutoff2 {
                    add_scaled(&mut f, scale, d);
                }
                terms += 1;
                magnitudes += magnitude;
                errors += 16.0 * U * magnitude;
                errors += if dn > 0.0 {
                    4.0 * magnitude / dn * delta
                } else {
                    0.0
                };
                if borderline {
                    errors += magnitude;
                }
            }
        }
        let springs = flags & features::SPRINGS != 0;
        let stretch = flags & features::SSSP_REST_LENGTH != 0 && p.sssp_alpha > 0.0;
        if springs {
            for &(j, w, _) in &rows[i] {
                let d = sub(pos[j], pi);
                let dist = norm(d);
                let dist32 = f32_dist(c.positions[i], c.positions[j]);
                if dist32 == 0.0 || dist == 0.0 {
                    continue;
                }
                let mut rest = f64::from(p.rest_length);
                if stretch {
                    let (du, dv) = (
                        c.sssp_dist.get(i).copied().unwrap_or(f32::INFINITY),
                        c.sssp_dist.get(j).copied().unwrap_or(f32::INFINITY),
                    );
                    if du.is_finite() && dv.is_finite() {
                        rest += f64::from(p.sssp_alpha) * (f64::from(du) - f64::from(dv)).abs();
                    }
                }
                let ks = f64::from(p.spring_k);
                let scale = ks * (dist - rest) * w / dist;
                add_scaled(&mut f, scale, d);
                let magnitude = (scale * dist).abs();
                let delta = 2.0 * 3f64.sqrt() * U * max_abs(pi).max(max_abs(pos[j]));
                terms += 1;
                magnitudes += magnitude;
                errors += 16.0 * U * magnitude
                    + ks * w.abs() * ((2.0 + rest / dist) * delta + 2.0 * U * (dist + rest));
                if dist32 < TINY_DIST {
                    errors += 2.0 * magnitude;
                }
            }
        }
        if flags & features::CENTER_GRAVITY != 0 {
            let g = f64::from(p.center_gravity_k);
            add_scaled(&mut f, -g, pi);
            terms += 1;
            magnitudes += g * norm(pi);
            errors += 2.0 * U * g * norm(pi);
        }
        if flags & features::CONSTRAINTS != 0 && ramp > 0.0 {
            let mut fc = [0.0f64; 3];
            let (mut c_mag, mut c_err) = (0.0f64, 0.0f64);
            let anchor = c.anchors.get(i).copied().unwrap_or([0.0; 4]);
            let k = f64::from(anchor[3]);
            if k > 0.0 {
                let d = sub(wide([anchor[0], anchor[1], anchor[2]]), pi);
                add_scaled(&mut fc, k, d);
                c_mag += k * norm(d);
                c_err += 4.0
                    * U
                    * k
                    * (norm(d) + max_abs(pi) + max_abs(wide([anchor[0], anchor[1], anchor[2]])));
            }
            for &(j, _, target) in &rows[i] {
                if target < 0.0 {
                    continue;
                }
                let d = sub(pos[j], pi);
                let dist = norm(d);
                let dist32 = f32_dist(c.positions[i], c.positions[j]);
                if dist32 > 0.0 && dist > 0.0 {
                    add_scaled(&mut fc, (dist - target) / dist, d);
                    if dist32 < TINY_DIST {
                        c_err += 2.0 * (dist - target).abs();
                    }
                    let delta = 2.0 * 3f64.sqrt() * U * max_abs(pi).max(max_abs(pos[j]));
                    c_mag += (dist - target).abs();
                    c_err += 16.0 * U * (dist - target).abs()
                        + (2.0 + target / dist) * delta
                        + 2.0 * U * (dist + target);
                }
            }
            let m = norm(fc);
            let cap = f64::from(p.constraint_max_force_per_node);
            let scale = if m > cap { cap / m } else { 1.0 };
            add_scaled(&mut f, scale * f64::from(ramp), fc);
            terms += rows[i].len() + 1;
            magnitudes += c_mag;
            // The cap is 2-Lipschitz.
            errors += 2.0 * c_err + 16.0 * U * c_mag;
        }
        let eps_f = 2.0 * (errors + terms as f64 * U * magnitudes);
        // Integration, as the law says.
        let fm = norm(f);
        let max_force = f64::from(p.max_force);
        if fm > max_force {
            f = f.map(|x| x * max_force / fm);
        }
        let mass = f64::from(c.masses.get(i).copied().unwrap_or(1.0));
        let v0 = wide(c.velocities.get(i).copied().unwrap_or([0.0; 3]));
        let mut v = [0.0f64; 3];
        for k in 0..3 {
            v[k] = (v0[k] + f[k] * dt / mass) * damp;
        }
        let vm = norm(v);
        let max_v = f64::from(p.max_velocity);
        if vm > max_v {
            v = v.map(|x| x * max_v / vm);
        }
        let eps_v =
            2.0 * (damp * dt / mass * eps_f + 4.0 * U * damp * (norm(v0) + norm(f) * dt / mass));
        let bound = f64::from(p.viewport_bounds);
        let mut x = pi;
        let mut tolerance = [0.0f64; 3];
        for k in 0..3 {
            x[k] += v[k] * dt;
            x[k] = x[k].clamp(-bound, bound);
            let eps_x = 2.0 * eps_v * dt + 2.0 * U * (pi[k].abs() + (v[k] * dt).abs());
            tolerance[k] = 4.0 * eps_x + f64::MIN_POSITIVE;
        }
        out.push(Expected {
            position: x,
            tolerance,
        });
    }
    out
}

/// The `physics` oracle: `after`, the engine's positions one step after the state `before` on the
/// grid `grid`, must be the reference's within its tolerance.
pub fn check_step(
    before: &Checkpoint,
    grid: &GridSpec,
    after: &[[f32; 3]],
) -> Result<(), Violation> {
    let expected = reference_step(before, grid);
    if after.len() != expected.len() {
        return Err(Violation {
            check: PHYSICS,
            detail: format!(
                "the step gave {} positions for {} nodes",
                after.len(),
                expected.len()
            ),
        });
    }
    for (i, (e, a)) in expected.iter().zip(after).enumerate() {
        for (k, &coordinate) in a.iter().enumerate() {
            let got = f64::from(coordinate);
            // NaN fails too.
            let within = (got - e.position[k]).abs() <= e.tolerance[k];
            if !within {
                return Err(Violation {
                    check: PHYSICS,
                    detail: format!(
                        "node {i} axis {k}: the engine stepped to {got}, the force law gives {} (tolerance {:.3e})",
                        e.position[k], e.tolerance[k]
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use forcefield::{CpuBackend, Edge, Engine, EngineConfig, Fault, FaultSet, GraphSpec};

    /// One step of a small graph (repulsion, springs, gravity, a position and a distance
    /// constraint) from a known state, on an engine with `faults`; then the reference's verdict.
    fn step_checked(faults: FaultSet) -> Result<(), Violation> {
        let graph = GraphSpec {
            num_nodes: 5,
            edges: vec![
                Edge::new(0, 1),
                Edge::new(1, 2),
                Edge::new(2, 2),
                Edge::new(3, 1),
            ],
            positions: Some(vec![
                [0.0, 0.0, 0.0],
                [1.5, 0.5, -0.25],
                [-2.0, 3.0, 1.0],
                [4.0, -1.0, 2.5],
                [0.0, 0.0, 0.0],
            ]),
        };
        let mut e = Engine::with_config(
            CpuBackend::with_threads(1),
            &graph,
            SimParams::default(),
            EngineConfig::default(),
            faults,
        )
        .unwrap();
        e.set_position_constraint(3, [1.0, 1.0, 1.0], 0.5).unwrap();
        e.set_distance_constraint(1, 0, 2.0).unwrap();
        // Velocities that are not zero, and an iteration inside the warm-up.
        e.step(3).unwrap();
        let before = e.checkpoint().clone();
        e.step(1).unwrap();
        let grid = e.grid().unwrap();
        check_step(&before, &grid, &e.positions().unwrap())
    }

    #[test]
    fn the_engine_steps_as_the_law_says_and_a_wrong_law_is_caught() {
        step_checked(FaultSet::NONE).unwrap();
        let wrong = step_checked(FaultSet::of(&[Fault::RepulsionOverscaled])).unwrap_err();
        assert_eq!(wrong.check, PHYSICS);
        assert!(wrong.detail.contains("the force law gives"), "{wrong}");
    }

    #[test]
    fn the_tolerance_is_far_below_what_a_wrong_law_moves() {
        let c = Checkpoint {
            num_nodes: 2,
            positions: vec![[0.0; 3], [1.0, 0.0, 0.0]],
            velocities: vec![[0.0; 3]; 2],
            masses: vec![1.0; 2],
            anchors: vec![[0.0; 4]; 2],
            sssp_dist: vec![f32::INFINITY; 2],
            params: SimParams::default(),
            ..Checkpoint::default()
        };
        let grid = GridSpec {
            origin: [0.0; 3],
            cell_size: 12.0,
            dims: [1, 1, 1],
        };
        let e = reference_step(&c, &grid);
        // Two nodes 1 apart repel: node 0 moves toward -x.
        assert!(e[0].position[0] < 0.0);
        let moved = e[0].position[0].abs();
        assert!(e[0].tolerance[0] < moved * 1e-3, "{:?}", e[0]);
        // Exact positions pass; one beyond the tolerance fails.
        let at = |dx: f64| -> Vec<[f32; 3]> {
            e.iter()
                .map(|x| {
                    [
                        (x.position[0] + dx) as f32,
                        x.position[1] as f32,
                        x.position[2] as f32,
                    ]
                })
                .collect()
        };
        check_step(&c, &grid, &at(0.0)).unwrap();
        assert!(check_step(&c, &grid, &at(moved * 0.1)).is_err());
    }
}
