/*!
`forcefield faults`: the planted-fault catalog, one line each.
*/

use crate::commands::error::CliError;

/// Prints every planted fault with its description.
pub fn run() -> Result<(), CliError> {
    let width = forcefield::Fault::ALL
        .iter()
        .map(|f| f.name().len())
        .max()
        .unwrap_or(0);
    for f in forcefield::Fault::ALL {
        println!("{:width$}  {}", f.name(), f.description());
    }
    Ok(())
}
