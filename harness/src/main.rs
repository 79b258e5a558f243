//! The `forcefield` binary: all logic lives in the `forcefield_harness` library.

fn main() {
    std::process::exit(forcefield_harness::commands::cli::main());
}
