/*!
Simulation parameters: [`SimParams`] as users write them (JSON through serde), their validation, and
[`KernelParams`], the flat copy that is uploaded to the kernels.

Every field of the original engine's `SimParams` is here. Validation turns nonsense (NaN, a negative
cell size, a zero time step with forces on) into a [`ParamError`] naming the field, before anything
reaches a kernel.
*/

use serde::{Deserialize, Serialize};

use crate::error::ParamError;

/// Smallest softening accepted while repulsion is on: `(d² + eps)^1.5` must stay a normal float.
pub const MIN_SOFTENING: f32 = 1e-12;

// Upper bounds. Validation keeps every intermediate value of a step finite: with positions inside
// the viewport (where every step leaves them), edge weights up to `MAX_FINITE_WEIGHT` and at most
// the engine's node and edge limits, no accepted parameter set turns finite positions into
// non-finite ones (`tests/finite_params.rs` checks it over the whole accepted range). Each bound is
// far beyond any useful layout; the derivation is at each constant.

/// Largest `viewport_bounds`: positions stay within ±1e9, so a distance is below 3.5e9 and its
/// square (1.2e19) is finite.
pub const MAX_VIEWPORT: f32 = 1e9;
/// Largest length parameter (`repulsion_cutoff`, `separation_radius`, `rest_length`).
pub const MAX_LENGTH: f32 = 1e9;
/// Largest `repel_k`: the separation push's numerator `repel_k * separation_radius` stays below
/// 1e29.
pub const MAX_REPEL_K: f32 = 1e20;
/// Largest `repel_k / repulsion_softening_epsilon` while repulsion is on. One pair's push is at
/// most `0.385 * repel_k / eps` (its maximum over distances), so 2^24 neighbours sum below 1e31;
/// the scale `repel_k / (d² + eps)^1.5` stays below `1e24 / sqrt(MIN_SOFTENING)` = 1e30.
pub const MAX_REPULSION_PER_SOFTENING: f64 = 1e24;
/// Largest `spring_k * max(rest_length, 1)`: the spring scale `spring_k * (dist - rest) * w / dist`
/// divides by a distance that can be as small as 3.7e-23 (the root of the smallest positive
/// float), so its numerator must stay below 1e15 for weights up to [`MAX_FINITE_WEIGHT`].
pub const MAX_SPRING_STIFFNESS: f64 = 1e12;
/// Edge weights up to which the bounds above are derived (the graph itself accepts any finite
/// weight).
pub const MAX_FINITE_WEIGHT: f32 = 1e3;
/// Largest `center_gravity_k`: the pull is at most 1e12 * 1e9.
pub const MAX_GRAVITY_K: f32 = 1e12;
/// Largest velocity change in one step: `max_force * dt`, `max_velocity * max(dt, 1)` and
/// `temperature` are each at most 1e30, so velocities and displacements stay finite before they are
/// capped and clamped.
pub const MAX_STEP_CHANGE: f64 = 1e30;

/// Bits of [`SimParams::feature_flags`].
pub mod features {
    /// Grid-based pairwise repulsion.
    pub const REPULSION: u32 = 1 << 0;
    /// Springs along edges.
    pub const SPRINGS: u32 = 1 << 1;
    /// Pull toward the origin.
    pub const CENTER_GRAVITY: u32 = 1 << 2;
    /// Position and distance constraints.
    pub const CONSTRAINTS: u32 = 1 << 3;
    /// Stretch spring rest lengths by `sssp_alpha * |dist_u - dist_v|` after an SSSP run.
    pub const SSSP_REST_LENGTH: u32 = 1 << 4;
    /// Thermal noise of amplitude `temperature` added to velocities.
    pub const THERMAL_NOISE: u32 = 1 << 5;
    /// Every defined bit.
    pub const ALL: u32 = (1 << 6) - 1;
    /// The default set: repulsion, springs, gravity and constraints.
    pub const DEFAULT: u32 = REPULSION | SPRINGS | CENTER_GRAVITY | CONSTRAINTS;
}

/// The parameters of the simulation.
///
/// Unknown fields are rejected; missing fields take their defaults, so a params file need name only
/// what it changes:
///
/// ```
/// let p: forcefield::SimParams = serde_json::from_str(r#"{ "spring_k": 0.5 }"#).unwrap();
/// assert_eq!(p.spring_k, 0.5);
/// assert!(p.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimParams {
    /// Time step of the integrator (> 0 whenever any force is on).
    pub dt: f32,
    /// Velocity damping per step once warm-up is over, in [0, 1].
    pub damping: f32,
    /// Steps over which damping blends from `cooling_rate` to `damping`.
    pub warmup_iterations: u32,
    /// Damping at the start of warm-up, in [0, 1].
    pub cooling_rate: f32,
    /// Spring stiffness.
    pub spring_k: f32,
    /// Spring rest length.
    pub rest_length: f32,
    /// Repulsion strength: the force is `repel_k * d / (d² + repulsion_softening_epsilon)^(3/2)`.
    pub repel_k: f32,
    /// Pairs farther apart than this do not repel (> 0).
    pub repulsion_cutoff: f32,
    /// Softening added to d² so that near-coincident nodes give a finite force (> 0 while repulsion
    /// is on).
    pub repulsion_softening_epsilon: f32,
    /// Strength of the pull toward the origin.
    pub center_gravity_k: f32,
    /// Cap on the magnitude of any force (> 0).
    pub max_force: f32,
    /// Cap on the magnitude of any velocity (> 0).
    pub max_velocity: f32,
    /// Edge of a grid cell; 0 chooses it from the bounding volume and node count (about two nodes per
    /// cell, within [cutoff / 64, cutoff]). Repulsion reaches only the 27 cells around a node, so a
    /// cell smaller than the cutoff truncates it.
    pub grid_cell_size: f32,
    /// Bit set of [`features`].
    pub feature_flags: u32,
    /// Seed of initial positions and thermal noise.
    pub seed: u64,
    /// The step counter the engine starts from (warm-up and ramps are measured from 0).
    pub iteration: u32,
    /// Nodes closer than this get an extra linear push apart (0 = off).
    pub separation_radius: f32,
    /// Amplitude of thermal noise (with [`features::THERMAL_NOISE`]).
    pub temperature: f32,
    /// Positions are clamped to `[-viewport_bounds, viewport_bounds]` on each axis (> 0).
    pub viewport_bounds: f32,
    /// Weight of the SSSP distance difference in spring rest lengths (>= 0).
    pub sssp_alpha: f32,
    /// Fraction of velocity kept (reflected) when a node hits the viewport boundary, in [0, 1].
    pub boundary_damping: f32,
    /// Steps over which constraint forces ramp in after constraints change (0 = at once).
    pub constraint_ramp_frames: u32,
    /// Cap on the constraint force on one node (>= 0).
    pub constraint_max_force_per_node: f32,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            dt: 0.2,
            damping: 0.9,
            warmup_iterations: 100,
            cooling_rate: 0.5,
            spring_k: 1.0,
            rest_length: 1.0,
            repel_k: 20.0,
            repulsion_cutoff: 12.0,
            repulsion_softening_epsilon: 0.5,
            center_gravity_k: 0.002,
            max_force: 100.0,
            max_velocity: 20.0,
            grid_cell_size: 0.0,
            feature_flags: features::DEFAULT,
            seed: 0,
            iteration: 0,
            separation_radius: 0.0,
            temperature: 0.0,
            viewport_bounds: 1000.0,
            sssp_alpha: 0.0,
            boundary_damping: 0.5,
            constraint_ramp_frames: 30,
            constraint_max_force_per_node: 50.0,
        }
    }
}

/// A bound or a checked value in an error: as f32 (the precision fields are written in) unless
/// only f64 holds it (a product past `f32::MAX`).
fn shown(value: f64) -> String {
    let narrow = value as f32;
    if narrow.is_finite() {
        format!("{narrow:e}")
    } else {
        format!("{value:e}")
    }
}

fn check(ok: bool, name: &'static str, reason: impl FnOnce() -> String) -> Result<(), ParamError> {
    if ok {
        Ok(())
    } else {
        Err(ParamError {
            name,
            reason: reason(),
        })
    }
}

macro_rules! finite_in {
    ($p:expr, $field:ident, $pred:expr, $what:expr) => {{
        let v = $p.$field;
        #[allow(clippy::redundant_closure_call)]
        let ok = v.is_finite() && ($pred)(v);
        check(ok, stringify!($field), || {
            format!("must be {}, got {}", $what, v)
        })?;
    }};
}

impl SimParams {
    /// Checks every field; the first bad one is named in the error.
    pub fn validate(&self) -> Result<(), ParamError> {
        let forces_on = self.feature_flags
            & (features::REPULSION
                | features::SPRINGS
                | features::CENTER_GRAVITY
                | features::CONSTRAINTS)
            != 0;
        finite_in!(self, dt, |v: f32| v >= 0.0, "finite and >= 0");
        check(!(forces_on && self.dt == 0.0), "dt", || {
            "must be > 0 while any force is enabled, got 0".to_string()
        })?;
        finite_in!(
            self,
            damping,
            |v: f32| (0.0..=1.0).contains(&v),
            "in [0, 1]"
        );
        finite_in!(
            self,
            cooling_rate,
            |v: f32| (0.0..=1.0).contains(&v),
            "in [0, 1]"
        );
        finite_in!(self, spring_k, |v: f32| v >= 0.0, "finite and >= 0");
        finite_in!(self, rest_length, |v: f32| v >= 0.0, "finite and >= 0");
        finite_in!(self, repel_k, |v: f32| v >= 0.0, "finite and >= 0");
        finite_in!(self, repulsion_cutoff, |v: f32| v > 0.0, "finite and > 0");
        finite_in!(
            self,
            repulsion_softening_epsilon,
            |v: f32| v >= 0.0,
            "finite and >= 0"
        );
        let repulsion_on = self.feature_flags & features::REPULSION != 0;
        check(
            !(repulsion_on && self.repulsion_softening_epsilon < MIN_SOFTENING),
            "repulsion_softening_epsilon",
            || {
                format!(
                    "must be >= {MIN_SOFTENING:e} while repulsion is enabled (smaller values overflow \
                     the force of near-coincident nodes), got {:e}",
                    self.repulsion_softening_epsilon
                )
            },
        )?;
        finite_in!(self, center_gravity_k, |v: f32| v >= 0.0, "finite and >= 0");
        finite_in!(self, max_force, |v: f32| v > 0.0, "finite and > 0");
        finite_in!(self, max_velocity, |v: f32| v > 0.0, "finite and > 0");
        self.validate_bounds()?;
        finite_in!(
            self,
            grid_cell_size,
            |v: f32| v >= 0.0,
            "finite and >= 0 (0 = auto)"
        );
        check(
            self.feature_flags & !features::ALL == 0,
            "feature_flags",
            || {
                format!(
                    "unknown bits {:#x} (known: {:#x})",
                    self.feature_flags & !features::ALL,
                    features::ALL
                )
            },
        )?;
        finite_in!(
            self,
            separation_radius,
            |v: f32| v >= 0.0,
            "finite and >= 0"
        );
        finite_in!(self, temperature, |v: f32| v >= 0.0, "finite and >= 0");
        finite_in!(self, viewport_bounds, |v: f32| v > 0.0, "finite and > 0");
        finite_in!(self, sssp_alpha, |v: f32| v >= 0.0, "finite and >= 0");
        finite_in!(
            self,
            boundary_damping,
            |v: f32| (0.0..=1.0).contains(&v),
            "in [0, 1]"
        );
        finite_in!(
            self,
            constraint_max_force_per_node,
            |v: f32| v >= 0.0,
            "finite and >= 0"
        );
        Ok(())
    }

    /// The upper bounds that keep a step's arithmetic finite (see [`MAX_VIEWPORT`] and the
    /// constants after it); called by [`SimParams::validate`] once every field is known finite.
    fn validate_bounds(&self) -> Result<(), ParamError> {
        // Compared in f64 (products of f32 fields do not round or overflow there), shown as f32,
        // the precision the user wrote them in.
        let at_most = |name: &'static str, value: f64, max: f64, what: &str| {
            check(value <= max, name, || {
                format!("{what} must be <= {}, got {}", shown(max), shown(value))
            })
        };
        at_most(
            "viewport_bounds",
            self.viewport_bounds as f64,
            MAX_VIEWPORT as f64,
            "viewport_bounds",
        )?;
        for (name, value) in [
            ("repulsion_cutoff", self.repulsion_cutoff),
            ("separation_radius", self.separation_radius),
            ("rest_length", self.rest_length),
        ] {
            at_most(name, value as f64, MAX_LENGTH as f64, name)?;
        }
        at_most(
            "repel_k",
            self.repel_k as f64,
            MAX_REPEL_K as f64,
            "repel_k",
        )?;
        if self.feature_flags & features::REPULSION != 0 {
            at_most(
                "repel_k",
                self.repel_k as f64 / self.repulsion_softening_epsilon as f64,
                MAX_REPULSION_PER_SOFTENING,
                "repel_k / repulsion_softening_epsilon",
            )?;
        }
        at_most(
            "spring_k",
            self.spring_k as f64 * (self.rest_length as f64).max(1.0),
            MAX_SPRING_STIFFNESS,
            "spring_k * max(rest_length, 1)",
        )?;
        at_most(
            "center_gravity_k",
            self.center_gravity_k as f64,
            MAX_GRAVITY_K as f64,
            "center_gravity_k",
        )?;
        let dt = self.dt as f64;
        at_most(
            "max_force",
            self.max_force as f64 * dt,
            MAX_STEP_CHANGE,
            "max_force * dt",
        )?;
        at_most(
            "max_velocity",
            self.max_velocity as f64 * dt.max(1.0),
            MAX_STEP_CHANGE,
            "max_velocity * max(dt, 1)",
        )?;
        at_most(
            "temperature",
            self.temperature as f64,
            MAX_STEP_CHANGE,
            "temperature",
        )
    }

    /// The flat copy the kernels read, for step `iteration`.
    pub fn kernel_params(&self, iteration: u32, constraint_ramp: f32) -> KernelParams {
        let warm = if self.warmup_iterations == 0 || iteration >= self.warmup_iterations {
            1.0
        } else {
            iteration as f32 / self.warmup_iterations as f32
        };
        KernelParams {
            dt: self.dt,
            damping: self.cooling_rate + (self.damping - self.cooling_rate) * warm,
            spring_k: self.spring_k,
            rest_length: self.rest_length,
            repel_k: self.repel_k,
            repulsion_cutoff: self.repulsion_cutoff,
            softening_eps: self.repulsion_softening_epsilon,
            center_gravity_k: self.center_gravity_k,
            max_force: self.max_force,
            max_velocity: self.max_velocity,
            separation_radius: self.separation_radius,
            temperature: self.temperature,
            viewport_bounds: self.viewport_bounds,
            sssp_alpha: self.sssp_alpha,
            boundary_damping: self.boundary_damping,
            constraint_ramp,
            constraint_max_force: self.constraint_max_force_per_node,
            feature_flags: self.feature_flags,
            iteration,
            seed_lo: self.seed as u32,
            seed_hi: (self.seed >> 32) as u32,
            slow_extra_work: 0,
            force_lanes: 1,
        }
    }
}

// ---- threads a node in the force pass -------------------------------------------------------------

/// Most threads that compute one node's force: a warp, so that a node's lanes reduce by shuffles.
pub const MAX_FORCE_LANES: u32 = 32;

/// The environment variable that fixes the force pass's lanes a node, overriding
/// [`force_lanes_for`]: for measuring the rule, not for tuning a deployment.
pub const FORCE_LANES_ENV: &str = "FORCEFIELD_FORCE_LANES";

/// Below this many live nodes the force pass gives each node [`SMALL_GRAPH_FORCE_LANES`] lanes.
pub const MANY_LANES_BELOW_NODES: u32 = 32_768;

/// Lanes a node of a graph below [`MANY_LANES_BELOW_NODES`] live nodes.
pub const SMALL_GRAPH_FORCE_LANES: u32 = 8;

/// Below this many live nodes (and from [`MANY_LANES_BELOW_NODES`]) each node gets
/// [`MEDIUM_GRAPH_FORCE_LANES`] lanes; from it on, one.
pub const SOME_LANES_BELOW_NODES: u32 = 200_000;

/// Lanes a node of a graph between [`MANY_LANES_BELOW_NODES`] and [`SOME_LANES_BELOW_NODES`].
pub const MEDIUM_GRAPH_FORCE_LANES: u32 = 4;

/// The force pass's threads a node for `num_nodes` live nodes: the one rule, read by the engine
/// before every force pass. It depends on the live count only, never on capacity (capacity is
/// unobservable, and the lanes change the order of a node's sum, so its bits). Small graphs are
/// latency-bound with one thread a node (10k threads are two warps a multiprocessor, each walking
/// ~500 candidates); large ones are issue-bound, where more lanes only add the reduction.
/// Measured on an H100 (`benches/GPU-NOTES.md`, round 6), force pass by lanes 1 / 4 / 8 / 16:
/// 10k nodes 111.6 / 45.3 / 36.5 / 43.5 µs, 100k 159.9 / 140.6 / 183.6 / 278.7 µs, 1M 1859 /
/// 1956 / 2522 / 3513 µs.
pub fn force_lanes_for(num_nodes: u32) -> u32 {
    if num_nodes < MANY_LANES_BELOW_NODES {
        SMALL_GRAPH_FORCE_LANES
    } else if num_nodes < SOME_LANES_BELOW_NODES {
        MEDIUM_GRAPH_FORCE_LANES
    } else {
        1
    }
}

/// Whether `lanes` is a valid [`KernelParams::force_lanes`]: a power of two in
/// 1..=[`MAX_FORCE_LANES`] (a divisor of the warp, so that a node's lanes never straddle two warps).
pub fn valid_force_lanes(lanes: u32) -> bool {
    lanes.is_power_of_two() && lanes <= MAX_FORCE_LANES
}

/// Checks a lane count given by a caller or the environment.
pub fn check_force_lanes(lanes: u32) -> Result<u32, ParamError> {
    if valid_force_lanes(lanes) {
        Ok(lanes)
    } else {
        Err(ParamError {
            name: "force_lanes",
            reason: format!("{lanes} is not a power of two in 1..={MAX_FORCE_LANES}"),
        })
    }
}

/// Parses the value of [`FORCE_LANES_ENV`].
pub fn parse_force_lanes(text: &str) -> Result<u32, ParamError> {
    let lanes = text.trim().parse::<u32>().map_err(|e| ParamError {
        name: FORCE_LANES_ENV,
        reason: format!("{text:?} is not a lane count: {e}"),
    })?;
    check_force_lanes(lanes).map_err(|e| ParamError {
        name: FORCE_LANES_ENV,
        reason: e.reason,
    })
}

/// The lanes fixed by [`FORCE_LANES_ENV`] (none when it is unset or empty), read once per process:
/// every engine of a process then sums in the same order, which the harness's re-runs and the
/// CPU shadow of a CUDA engine compare bit for bit.
pub fn force_lanes_from_env() -> Result<Option<u32>, ParamError> {
    static FROM_ENV: std::sync::OnceLock<Result<Option<u32>, ParamError>> =
        std::sync::OnceLock::new();
    FROM_ENV
        .get_or_init(|| match std::env::var(FORCE_LANES_ENV) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => parse_force_lanes(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(ParamError {
                name: FORCE_LANES_ENV,
                reason: e.to_string(),
            }),
        })
        .clone()
}

/// The parameters as kernels see them: derived per step (warm-up blended damping, constraint ramp),
/// `#[repr(C)]` so that the CUDA backend passes it by value with the same layout as `kernels/common.cuh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct KernelParams {
    /// Time step.
    pub dt: f32,
    /// Damping of this step (warm-up blended).
    pub damping: f32,
    /// Spring stiffness.
    pub spring_k: f32,
    /// Spring rest length.
    pub rest_length: f32,
    /// Repulsion strength.
    pub repel_k: f32,
    /// Repulsion cutoff distance.
    pub repulsion_cutoff: f32,
    /// Softening epsilon.
    pub softening_eps: f32,
    /// Centre gravity strength.
    pub center_gravity_k: f32,
    /// Force cap.
    pub max_force: f32,
    /// Velocity cap.
    pub max_velocity: f32,
    /// Separation radius.
    pub separation_radius: f32,
    /// Thermal noise amplitude.
    pub temperature: f32,
    /// Viewport half-extent.
    pub viewport_bounds: f32,
    /// SSSP rest-length weight.
    pub sssp_alpha: f32,
    /// Boundary reflection factor.
    pub boundary_damping: f32,
    /// Constraint ramp factor of this step, in [0, 1].
    pub constraint_ramp: f32,
    /// Cap on constraint force per node.
    pub constraint_max_force: f32,
    /// Feature bits.
    pub feature_flags: u32,
    /// Step number.
    pub iteration: u32,
    /// Low half of the seed.
    pub seed_lo: u32,
    /// High half of the seed.
    pub seed_hi: u32,
    /// Dummy iterations per 1000 repulsion candidates scanned in the force pass, result discarded:
    /// 0, except under the planted graded slowdowns (`slow-force-pass-<n>pct`).
    pub slow_extra_work: u32,
    /// Threads that compute one node's force in the force pass ([`force_lanes_for`]): a power of
    /// two in 1..=[`MAX_FORCE_LANES`]. Lane `l` sums the repulsion candidates whose ordinal in the
    /// node's scan is `l` modulo the lanes and the springs likewise, then the lanes' partial
    /// forces are added in a fixed tree. 1 sums in scan order, as one thread a node did.
    pub force_lanes: u32,
}

impl KernelParams {
    /// [`Self::force_lanes`] as the kernels use it: a value that is not a valid lane count (the
    /// `Default` 0) is 1, so that both backends read any params the same way.
    pub fn lanes(&self) -> u32 {
        if valid_force_lanes(self.force_lanes) {
            self.force_lanes
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_lanes_are_powers_of_two_up_to_a_warp() {
        for lanes in [1, 2, 4, 8, 16, 32] {
            assert_eq!(parse_force_lanes(&format!(" {lanes}\n")), Ok(lanes));
        }
        for bad in ["0", "3", "24", "64", "-1", "eight", ""] {
            let err = parse_force_lanes(bad).unwrap_err();
            assert_eq!(err.name, FORCE_LANES_ENV, "{bad:?}");
        }
        let params = KernelParams::default();
        assert_eq!(params.force_lanes, 0);
        assert_eq!(params.lanes(), 1, "an unset lane count is one lane");
        assert_eq!(SimParams::default().kernel_params(0, 1.0).force_lanes, 1);
    }

    #[test]
    fn defaults_are_valid() {
        SimParams::default().validate().unwrap();
    }

    #[test]
    fn rejects_nonsense_with_the_field_name() {
        let p = SimParams {
            grid_cell_size: -1.0,
            ..SimParams::default()
        };
        let e = p.validate().unwrap_err();
        assert_eq!(e.name, "grid_cell_size");
        let p = SimParams {
            dt: f32::NAN,
            ..SimParams::default()
        };
        assert_eq!(p.validate().unwrap_err().name, "dt");
        let p = SimParams {
            dt: 0.0,
            ..SimParams::default()
        };
        assert!(p.validate().unwrap_err().reason.contains("force"));
        let p = SimParams {
            dt: 0.0,
            feature_flags: 0,
            ..SimParams::default()
        };
        assert!(p.validate().is_ok());
        let p = SimParams {
            feature_flags: 1 << 20,
            ..SimParams::default()
        };
        assert_eq!(p.validate().unwrap_err().name, "feature_flags");
    }

    #[test]
    fn huge_finite_values_that_would_overflow_a_step_are_rejected() {
        // The value of the report: finite, accepted before, and NaN two steps later.
        let p: SimParams = serde_json::from_str(r#"{"repel_k": 3.4e38}"#).unwrap();
        let e = p.validate().unwrap_err();
        assert_eq!(e.name, "repel_k");
        assert_eq!(e.reason, "repel_k must be <= 1e20, got 3.4e38");
        let p = SimParams {
            repel_k: 1e19,
            repulsion_softening_epsilon: 1e-6,
            ..SimParams::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .reason
            .contains("repel_k / repulsion_softening_epsilon"));
        let p = SimParams {
            max_force: 1e30,
            dt: 10.0,
            ..SimParams::default()
        };
        assert_eq!(p.validate().unwrap_err().name, "max_force");
        let p = SimParams {
            viewport_bounds: 2e9,
            ..SimParams::default()
        };
        assert_eq!(p.validate().unwrap_err().name, "viewport_bounds");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<SimParams>(r#"{"sprin_k": 1}"#).is_err());
    }

    #[test]
    fn warmup_blends_damping_from_cooling_rate() {
        let p = SimParams::default();
        assert_eq!(p.kernel_params(0, 1.0).damping, p.cooling_rate);
        assert_eq!(p.kernel_params(p.warmup_iterations, 1.0).damping, p.damping);
    }
}
