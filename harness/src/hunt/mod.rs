/*!
Hunting: campaigns, minimization, corpus, soak and the self-test, on top of the client.
*/

pub mod campaign;
pub mod campaign_dir;
pub mod corpus;
pub mod dedup;
pub mod report;
pub mod selftest;
pub mod soak;
pub mod time_split;
pub mod watchdog;
