/*!
Planted faults: named, runtime-selectable defects, each a one-line deviation at its real site,
modelled on bugs the original engine had. They exist so that the harness's power can be measured.

The names always exist (so that tools can parse and list them); the defects themselves are compiled
only with the `faults` cargo feature. Without it [`FaultSet::contains`] is always false and the
optimizer removes every fault site.
*/

use serde::{Deserialize, Serialize};

/// What a planted fault breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A crash, a hang or a wrong answer: campaigns must find it.
    Crash,
    /// A slowdown with the same results: only the benchmark gate can see it.
    Performance,
}

/// Which backends a planted fault exists on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultBackends {
    /// The CPU and the CUDA backend.
    Both,
    /// Only the CUDA backend (the defect needs concurrent streams).
    CudaOnly,
}

macro_rules! faults {
    ($( $variant:ident => $name:literal, $kind:ident, $backends:ident, $doc:literal; )*) => {
        /// A planted fault.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Fault { $( #[doc = $doc] #[serde(rename = $name)] $variant, )* }

        impl Fault {
            /// Every fault, in catalog order.
            pub const ALL: &'static [Fault] = &[ $( Fault::$variant, )* ];

            /// The name used on command lines, in case files and in `FORCEFIELD_FAULTS`.
            pub const fn name(self) -> &'static str {
                match self { $( Fault::$variant => $name, )* }
            }

            /// One line on what the defect is.
            pub const fn description(self) -> &'static str {
                match self { $( Fault::$variant => $doc, )* }
            }

            /// What the defect breaks.
            pub const fn kind(self) -> FaultKind {
                match self { $( Fault::$variant => FaultKind::$kind, )* }
            }

            /// Where the defect exists.
            pub const fn backends(self) -> FaultBackends {
                match self { $( Fault::$variant => FaultBackends::$backends, )* }
            }
        }
    };
}

faults! {
    SortCountUnclamped => "sort-count-unclamped", Crash, Both,
        "after growth the sort's scratch buffers keep the old capacity while the sort processes num_nodes items (the seed bug)";
    AnalyticsNotResized => "analytics-not-resized", Crash, Both,
        "node growth resizes the layout buffers but not the SSSP buffers";
    GridCapUnclamped => "grid-cap-unclamped", Crash, Both,
        "cell buffers stop growing at the cell cap while kernels index with the uncapped grid dimensions";
    FrontierUndersized => "frontier-undersized", Crash, Both,
        "SSSP swaps in a one-element frontier buffer, then compacts the next frontier into it";
    CellBoundsOverCells => "cell-bounds-over-cells", Crash, Both,
        "cell bounds are launched over the number of cells instead of the number of nodes";
    SortValuesStale => "sort-values-stale", Crash, Both,
        "the sort's values are last step's permutation instead of the identity";
    ParamsNotUploaded => "params-not-uploaded", Crash, Both,
        "parameter changes never reach the kernels";
    LoggerRelock => "logger-relock", Crash, Both,
        "the kernel logger re-locks its metrics mutex when it flags an anomaly (the seed's deadlock)";
    CopyLengthMismatch => "copy-length-mismatch", Crash, Both,
        "after node growth the CSR upload copies a row-offset vector of the old length";
    ResizeFailureStale => "resize-failure-stale", Crash, Both,
        "an allocation failure midway through a resize leaves the capacity fields updated but the old buffers in place";
    NoSoftening => "no-softening", Crash, Both,
        "repulsion runs without the softening epsilon (coincident nodes give NaN)";
    LeakOnResize => "leak-on-resize", Crash, Both,
        "old buffers are never freed when a resize replaces them";
    RaceIntegrate => "race-integrate", Crash, CudaOnly,
        "integrate runs on a second stream with no dependency on the force pass it reads";
    SlowForcePass => "slow-force-pass", Performance, Both,
        "the force pass scans the 125 cells around each node instead of 27, with the same result";
    AddEdgesDeduplicated => "add-edges-deduplicated", Crash, Both,
        "adding an edge between two nodes already joined is skipped: the edge multiset is kept as a set";
    RemoveNodesVelocitiesStale => "remove-nodes-velocities-stale", Crash, Both,
        "node removal compacts positions but not velocities: survivors take the velocity of whoever held their slot";
    RepulsionOverscaled => "repulsion-overscaled", Crash, Both,
        "the force pass applies 1.5 times the documented repulsion: a wrong law, finite and deterministic";
    SlowForcePass1 => "slow-force-pass-1pct", Performance, Both,
        "the force pass does about 1% more work (dummy arithmetic per candidate scanned, discarded), with the same result";
    SlowForcePass3 => "slow-force-pass-3pct", Performance, Both,
        "the force pass does about 3% more work (dummy arithmetic per candidate scanned, discarded), with the same result";
    SlowForcePass10 => "slow-force-pass-10pct", Performance, Both,
        "the force pass does about 10% more work (dummy arithmetic per candidate scanned, discarded), with the same result";
}

impl Fault {
    /// Whether the fault exists on the backend named `backend` (`"cpu"` or `"cuda"`).
    pub fn applies_to(self, backend: &str) -> bool {
        match self.backends() {
            FaultBackends::Both => true,
            FaultBackends::CudaOnly => backend == "cuda",
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault `{s}` (known: {})", known.join(", "))
            })
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The environment variable that switches planted faults on for benches and the binary.
pub const FAULTS_ENV: &str = "FORCEFIELD_FAULTS";

/// A set of active faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultSet(u64);

impl FaultSet {
    /// No faults.
    pub const NONE: FaultSet = FaultSet(0);

    /// The set of `faults`.
    pub fn of(faults: &[Fault]) -> Self {
        FaultSet(faults.iter().fold(0, |acc, f| acc | 1 << *f as u64))
    }

    /// Whether `fault` is active. Always false without the `faults` feature.
    #[inline(always)]
    pub fn contains(self, fault: Fault) -> bool {
        cfg!(feature = "faults") && self.0 & (1 << fault as u64) != 0
    }

    /// Whether no fault is active.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The active faults.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL
            .iter()
            .copied()
            .filter(move |f| self.0 & (1 << *f as u64) != 0)
    }

    /// The faults named by the `FORCEFIELD_FAULTS` environment variable (none when it is unset or
    /// empty). The benches and the `forcefield` binary read the same variable.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(FAULTS_ENV) {
            Ok(v) => Self::parse_list(&v).map_err(|e| format!("{FAULTS_ENV}: {e}")),
            Err(std::env::VarError::NotPresent) => Ok(FaultSet::NONE),
            Err(e) => Err(format!("{FAULTS_ENV}: {e}")),
        }
    }

    /// Parses a comma-separated list such as the `FORCEFIELD_FAULTS` variable.
    pub fn parse_list(s: &str) -> Result<Self, String> {
        let mut faults = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            faults.push(part.parse()?);
        }
        Ok(FaultSet::of(&faults))
    }
}
