/*!
The driver's side of the worker protocol.
*/

pub mod sanitize_mode;
pub mod signature;
