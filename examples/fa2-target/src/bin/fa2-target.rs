//! `fa2-target`: fa2 served over `forcefield-target/1` on stdin and stdout.

use fa2_target::Fa2Target;

fn main() {
    if let Err(e) = forcefield_target::serve_stdio(Fa2Target::default()) {
        eprintln!("fa2-target: {e}");
        std::process::exit(1);
    }
}
