/*!
The worker side of the process boundary: what a `forcefield worker` process does with a request.
[`job`] decodes the request and answers it; [`execute`] runs a case in-process, op by op, with the
oracles of [`oracle`], the reference model of [`model`] and the force-law reference of [`physics`];
[`traced_backend`] writes the running kernel into the breadcrumbs; [`violations`] keeps the first
memory violation of a checked backend for the reply.

**Architecture Invariant:** this layer imports only `case`, `sanitizers` (the mode's value),
`isolate` and the base files. It knows nothing of the driver: no campaign, no client, no command
line; the driver reaches it only through the worker protocol.
*/

pub(crate) mod engine_case;
pub(crate) mod engine_target;
pub mod execute;
pub mod job;
pub(crate) mod model;
pub mod oracle;
pub(crate) mod physics;
pub(crate) mod shadow;
pub(crate) mod target_case;
pub(crate) mod target_job;
pub(crate) mod traced_backend;
pub(crate) mod violations;
