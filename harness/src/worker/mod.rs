/*!
The worker side of the process boundary: what a `forcefield worker` process does with a request.
*/

pub mod execute;
pub mod job;
pub mod model;
pub mod oracle;
pub mod physics;
pub mod traced_backend;
