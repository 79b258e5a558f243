/*!
External sanitizers run over cases.
*/

pub mod compute_sanitizer;
