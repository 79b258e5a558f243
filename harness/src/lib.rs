/*!
Forcefield's driver: the `forcefield` command line and everything behind it.

# Brief overview

* [`cli`] parses the command line and maps every error to an exit code ([`exit`]).
* [`graph_io`] reads graphs (edge lists, Matrix Market, JSON); [`svg`] draws layouts.
*/

pub(crate) mod artifacts;
pub mod bench;
pub mod case;
pub mod client;
pub mod commands;
pub mod exit;
pub(crate) mod graph_io;
pub mod hunt;
pub(crate) mod input;
pub(crate) mod interrupt;
pub mod isolate;
pub mod sanitizers;
pub mod svg;
pub mod worker;

/// One executable that is both driver and worker of a user's engine: see
/// [`commands::embed`].
pub use commands::embed;
