//! Placeholder; replaced by the CLI.
pub fn main() -> i32 {
    0
}
