/*!
Planted faults: named, runtime-selectable defects, each a one-line deviation at its real site,
modelled on bugs the original engine had. They exist so that the harness's power can be measured.

The names always exist (so that tools can parse and list them); the defects themselves are compiled
only with the `faults` cargo feature. Without it [`FaultSet::contains`] is always false and the
optimizer removes every fault site.
*/

use serde::{Deserialize, Serialize};

macro_rules! faults {
    ($( $variant:ident => $name:literal, $doc:literal; )*) => {
        /// A planted fault.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Fault { $( #[doc = $doc] #[serde(rename = $name)] $variant, )* }

        impl Fault {
            /// Every fault.
            pub const ALL: &'static [Fault] = &[ $( Fault::$variant, )* ];

            /// The name used on command lines, in case files and in `FORCEFIELD_FAULTS`.
            pub const fn name(self) -> &'static str {
                match self { $( Fault::$variant => $name, )* }
            }

            /// One line on what the defect is.
            pub const fn description(self) -> &'static str {
                match self { $( Fault::$variant => $doc, )* }
            }
        }
    };
}

faults! {
    SortCountUnclamped => "sort-count-unclamped",
        "after growth the sort's scratch buffers keep the old capacity while the sort processes num_nodes items (the seed bug)";
    LoggerRelock => "logger-relock",
        "the kernel logger re-locks its metrics mutex when it flags an anomaly (the seed's deadlock)";
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

    /// Parses a comma-separated list such as the `FORCEFIELD_FAULTS` variable.
    pub fn parse_list(s: &str) -> Result<Self, String> {
        let mut faults = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            faults.push(part.parse()?);
        }
        Ok(FaultSet::of(&faults))
    }
}
