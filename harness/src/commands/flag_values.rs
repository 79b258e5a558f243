//! The command line's spelling of values that are defined below `commands/`: `clap::ValueEnum`
//! for [`SanitizeMode`] (`--sanitize`) and compute-sanitizer's [`Tool`] (`--tool`), written here
//! so that the layers below know nothing of clap. Names and help lines come from the types'
//! own `name` and `description`.

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::sanitizers::compute_sanitizer::Tool;
use crate::sanitizers::mode::SanitizeMode;

impl ValueEnum for SanitizeMode {
    fn value_variants<'a>() -> &'a [Self] {
        &SanitizeMode::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.description()))
    }
}

impl ValueEnum for Tool {
    fn value_variants<'a>() -> &'a [Self] {
        &Tool::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.description()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_parses_from_its_name() {
        for m in SanitizeMode::value_variants() {
            assert_eq!(SanitizeMode::from_str(m.name(), false), Ok(*m));
        }
        for t in Tool::value_variants() {
            assert_eq!(Tool::from_str(t.name(), false), Ok(*t));
        }
        assert!(SanitizeMode::from_str("memcheckk", false).is_err());
        assert_eq!(SanitizeMode::value_variants().len(), 6);
        assert_eq!(Tool::value_variants().len(), 4);
    }
}
