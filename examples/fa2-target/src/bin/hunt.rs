//! `hunt`: the harness embedded, hunting fa2 — driver and worker in one executable
//! (`cargo run --release -p fa2-target --bin hunt -- run --time 60s`).

fn main() -> std::process::ExitCode {
    forcefield_harness::embed::main(fa2_target::Fa2Target::default)
}
