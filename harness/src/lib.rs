/*!
Forcefield's driver: the `forcefield` command line and everything behind it.

# Brief overview

* [`cli`] parses the command line and maps every error to an exit code ([`exit`]).
* [`graph_io`] reads graphs (edge lists, Matrix Market, JSON); [`svg`] draws layouts.
*/

pub mod cli;
pub mod exit;
pub mod graph_io;
pub mod svg;
