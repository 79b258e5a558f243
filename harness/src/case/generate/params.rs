//! Parameter extremes: [`ParamTweak`]s, extreme-but-valid changes to the default parameters.

use std::ops::Range;

use forcefield::params::features;
use forcefield::SimParams;
use rand::Rng;

/// One extreme-but-valid change to the default parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamTweak {
    /// `grid_cell_size` 1e-3 (the cell cap then decides).
    TinyCellSize,
    /// `grid_cell_size` 1e5: one cell.
    HugeCellSize,
    /// `repel_k` 1e6.
    HugeRepelK,
    /// `viewport_bounds` 0.5.
    TinyViewport,
    /// `viewport_bounds` 1e6.
    HugeViewport,
    /// `repulsion_cutoff` 1e-3.
    TinyCutoff,
    /// `repulsion_cutoff` 1e4: every pair repels.
    HugeCutoff,
    /// `repulsion_softening_epsilon` 1e-6.
    TinySoftening,
    /// `repulsion_softening_epsilon` at the smallest value validation accepts, so small that
    /// it no longer keeps coincident nodes finite in `f32`.
    MinimalSoftening,
    /// `dt` 1e-4.
    TinyDt,
    /// `dt` 2.
    LargeDt,
    /// `damping` and `cooling_rate` 0.
    NoDamping,
    /// `damping` and `cooling_rate` 1 (no velocity loss).
    FullDamping,
    /// `max_force` 1e-3.
    TinyMaxForce,
    /// `max_force` 1e9.
    HugeMaxForce,
    /// `max_velocity` 1e-3.
    TinyMaxVelocity,
    /// `max_velocity` 1e6.
    HugeMaxVelocity,
    /// `spring_k` 100.
    StiffSprings,
    /// `rest_length` 0.
    ZeroRestLength,
    /// `rest_length` 1e3.
    LongRestLength,
    /// `center_gravity_k` 10.
    StrongGravity,
    /// `feature_flags` set to these bits (masked to the known ones).
    Features(u32),
    /// Thermal noise on, at this temperature.
    Noise(f32),
    /// `separation_radius`.
    Separation(f32),
    /// SSSP rest-length stretching on, with this `sssp_alpha`.
    SsspStretch(f32),
    /// `warmup_iterations` 0.
    NoWarmup,
    /// `iteration` a few steps before `u32::MAX`, so that the step counter wraps.
    IterationNearWrap,
    /// `seed`.
    Seed(u64),
}

impl ParamTweak {
    /// Applies the tweak.
    pub fn apply(self, p: &mut SimParams) {
        match self {
            ParamTweak::TinyCellSize => p.grid_cell_size = 1e-3,
            ParamTweak::HugeCellSize => p.grid_cell_size = 1e5,
            ParamTweak::HugeRepelK => p.repel_k = 1e6,
            ParamTweak::TinyViewport => p.viewport_bounds = 0.5,
            ParamTweak::HugeViewport => p.viewport_bounds = 1e6,
            ParamTweak::TinyCutoff => p.repulsion_cutoff = 1e-3,
            ParamTweak::HugeCutoff => p.repulsion_cutoff = 1e4,
            ParamTweak::TinySoftening => p.repulsion_softening_epsilon = 1e-6,
            ParamTweak::MinimalSoftening => {
                p.repulsion_softening_epsilon = forcefield::params::MIN_SOFTENING
            }
            ParamTweak::TinyDt => p.dt = 1e-4,
            ParamTweak::LargeDt => p.dt = 2.0,
            ParamTweak::NoDamping => {
                p.damping = 0.0;
                p.cooling_rate = 0.0;
            }
            ParamTweak::FullDamping => {
                p.damping = 1.0;
                p.cooling_rate = 1.0;
            }
            ParamTweak::TinyMaxForce => p.max_force = 1e-3,
            ParamTweak::HugeMaxForce => p.max_force = 1e9,
            ParamTweak::TinyMaxVelocity => p.max_velocity = 1e-3,
            ParamTweak::HugeMaxVelocity => p.max_velocity = 1e6,
            ParamTweak::StiffSprings => p.spring_k = 100.0,
            ParamTweak::ZeroRestLength => p.rest_length = 0.0,
            ParamTweak::LongRestLength => p.rest_length = 1e3,
            ParamTweak::StrongGravity => p.center_gravity_k = 10.0,
            ParamTweak::Features(bits) => p.feature_flags = bits & features::ALL,
            ParamTweak::Noise(t) => {
                p.feature_flags |= features::THERMAL_NOISE;
                p.temperature = t.abs();
            }
            ParamTweak::Separation(r) => p.separation_radius = r.abs(),
            ParamTweak::SsspStretch(a) => {
                p.feature_flags |= features::SSSP_REST_LENGTH;
                p.sssp_alpha = a.abs();
            }
            ParamTweak::NoWarmup => p.warmup_iterations = 0,
            ParamTweak::IterationNearWrap => p.iteration = u32::MAX - 3,
            ParamTweak::Seed(s) => p.seed = s,
        }
    }

    /// The tweaks without a value, in the order both generators draw them from (the seeded one
    /// by index, so the order is part of what a seed gives).
    pub(super) const FIXED: [ParamTweak; 22] = {
        use ParamTweak::*;
        [
            TinyCellSize,
            HugeCellSize,
            HugeRepelK,
            TinyViewport,
            HugeViewport,
            TinyCutoff,
            HugeCutoff,
            TinySoftening,
            MinimalSoftening,
            TinyDt,
            LargeDt,
            NoDamping,
            FullDamping,
            TinyMaxForce,
            HugeMaxForce,
            TinyMaxVelocity,
            HugeMaxVelocity,
            StiffSprings,
            ZeroRestLength,
            LongRestLength,
            StrongGravity,
            NoWarmup,
        ]
    };
    /// The values `Noise`, `Separation` and `SsspStretch` take, in both generators.
    pub(super) const NOISE_TEMPERATURES: Range<f32> = 0.0..10.0;
    pub(super) const SEPARATION_RADII: Range<f32> = 0.0..5.0;
    pub(super) const SSSP_STRETCHES: Range<f32> = 0.0..2.0;

    pub(super) fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        use ParamTweak::*;
        const FIXED: [ParamTweak; 22] = ParamTweak::FIXED;
        match rng.gen_range(0..30) {
            0 => Features(rng.gen_range(0..=features::ALL)),
            1 => Noise(rng.gen_range(Self::NOISE_TEMPERATURES)),
            2 => Separation(rng.gen_range(Self::SEPARATION_RADII)),
            3 => SsspStretch(rng.gen_range(Self::SSSP_STRETCHES)),
            4 => IterationNearWrap,
            5..=7 => Seed(rng.gen()),
            k => FIXED[(k - 8) % FIXED.len()],
        }
    }
}

/// The default parameters with `tweaks` applied in order. Always valid.
pub fn params_with(tweaks: &[ParamTweak]) -> SimParams {
    let mut p = SimParams::default();
    for t in tweaks {
        t.apply(&mut p);
    }
    p
}

pub(super) fn random_tweaks<R: Rng + ?Sized>(rng: &mut R, probability: f64) -> Vec<ParamTweak> {
    if !rng.gen_bool(probability.clamp(0.0, 1.0)) {
        return Vec::new();
    }
    (0..rng.gen_range(1..=4))
        .map(|_| ParamTweak::random(rng))
        .collect()
}
