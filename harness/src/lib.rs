/*!
Forcefield's driver: the `forcefield` command line and everything behind it.
*/

pub mod cli;
pub mod exit;
pub mod graph_io;
pub mod layout;
pub mod svg;
