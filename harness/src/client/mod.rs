/*!
The driver's side of the worker protocol: how a worker is started ([`start`]: plain, checked or
under a compute-sanitizer tool), how one case runs in it ([`run`]: the payload, resumption after a
poisoned process), how several run side by side in one ([`batch`]: a verdict per case, and which
cases must run alone after the worker died) and what its reply means ([`signature`]: the verdict of an execution, the one
decoder of worker replies).

**Architecture Invariant:** this layer imports `worker` only for the wire types of a request and
a reply, and below that `case`, `sanitizers`, `isolate` and the base files. It never imports
`hunt` or `commands`: a campaign is built on the client, never the other way round.
*/

pub mod batch;
pub(crate) mod run;
pub mod signature;
pub(crate) mod start;
pub(crate) mod target_verdict;
