/*!
The target API: any force-layout engine, behind one trait, that Forcefield can hunt.

Forcefield's harness was built around one engine, its own. This crate is the seam that opens it to
others, in two ways:

* **in Rust**, implement [`Target`] for your engine (the operations of a `forcefield-case/1` log,
  plus optional read-backs declared as [`Capabilities`]), and [`serve_stdio`] makes a binary of it;
* **in any language**, speak the `forcefield-target/1` protocol ([`protocol`], specified in
  `docs/worker-protocol.md`): newline-delimited JSON requests on stdin, one reply each on stdout.

Either way the driver sees a [`ProcessTarget`]: a child process in its own process group, a timeout
per request, and a death classified by exit code or signal with the last lines of its stderr.
[`check::check`] runs a fixed conformance script against a target and says in plain words what it
does wrong (`forcefield target check "CMD"` on the command line).

# Brief overview

* [`Target`], [`TargetError`] (`Rejected` is a correct answer, `Internal`, `Died`, `Hung` and
  `Protocol` are defects), [`Capability`], and the values: [`Graph`], [`Edge`], [`Counts`],
  [`GridStage`], [`Csr`], [`EnvFault`].
* [`protocol`]: the messages ([`protocol::Request`], [`protocol::Reply`], [`protocol::Hello`]),
  [`protocol::serve`] and [`serve_stdio`].
* [`ProcessTarget`]: the driver's side of the protocol.
* [`check`](mod@check): conformance.
*/

pub mod check;
pub mod process;
pub mod protocol;
pub mod target;
pub mod wire;

pub use check::{check, CheckReport, Problem};
pub use process::{ProcessOptions, ProcessTarget, SpawnError};
pub use protocol::{serve_stdio, PROTOCOL};
pub use target::{
    Attributes, Buffer, Capabilities, Capability, Counts, Csr, Death, Edge, EnvFault, ExitKind,
    Graph, GridStage, Params, Point, Result, Target, TargetError, TargetInfo,
};
