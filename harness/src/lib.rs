/*!
Forcefield's driver: the `forcefield` command line and everything behind it.

# Brief overview

* [`cli`] parses the command line and maps every error to an exit code ([`exit`]).
* [`graph_io`] reads graphs (edge lists, Matrix Market, JSON); [`svg`] draws layouts.
*/

pub mod artifacts;
pub mod backend_select;
pub mod bench;
pub mod campaign;
pub mod campaign_dir;
pub mod case;
pub mod cli;
pub mod commands;
pub mod compute_sanitizer;
pub mod corpus;
pub mod ddmin;
pub mod dedup;
pub mod execute;
pub mod exit;
pub mod generate;
pub mod graph_io;
pub mod input;
pub mod interrupt;
pub mod isolate;
pub mod job;
pub mod layout;
pub mod minimize;
pub mod model;
pub mod oracle;
pub mod physics;
pub mod report;
pub mod sanitize_mode;
pub mod selftest;
pub mod shrink;
pub mod signature;
pub mod soak;
pub mod svg;
pub mod time_split;
pub mod traced_backend;
pub mod watchdog;
