/*!
`forcefield worker`: the process a driver starts to run cases in isolation. Not for people: it
speaks the worker protocol (`crate::isolate::protocol`) on inherited descriptors and exits when its
driver goes away.
*/

use crate::commands::error::CliError;
use crate::sanitizers::mode::SanitizeMode;
use crate::worker::job::Handler;
use crate::worker::target_job::{TargetHandler, TargetSource};

/// Arguments of `forcefield worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Threads of the CPU backend's kernels (0: every core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// `checked`: open backends in their checked mode (other modes wrap the worker from outside).
    #[arg(long, value_enum, default_value_t = SanitizeMode::Off)]
    pub sanitize: SanitizeMode,
    /// Run cases on this command's engine, a program speaking `forcefield-target/1`, instead of
    /// Forcefield's own (in an embedding executable, the embedded engine is the default).
    #[arg(long)]
    pub target: Option<String>,
}

/// Serves requests until the driver closes the channel.
pub fn run(args: &WorkerArgs) -> Result<(), CliError> {
    let code = match TargetSource::resolve(args.target.as_deref()) {
        Some(source) => {
            let mut handler = TargetHandler::new(source);
            crate::isolate::worker_main("target", &mut |payload, crumbs| {
                handler.handle_raw(payload, crumbs)
            })
        }
        None => {
            // Cases side by side on threads of this process map and unmap the CPU backend's
            // regions all the time (their CUDA cases' shadow engines); recycled, they no longer
            // wait for one another on the address-space lock (see `memory`).
            forcefield::backend::cpu::memory::recycle_freed_regions();
            let mut handler = Handler::new(args.threads).with_sanitize(args.sanitize);
            crate::isolate::worker_main("engine", &mut |payload, crumbs| {
                handler.handle_raw(payload, crumbs)
            })
        }
    };
    match code {
        0 => Ok(()),
        crate::exit::BAD_INPUT => Err(CliError::input(anyhow::anyhow!(
            "`forcefield worker` is started by forcefield itself, not by hand"
        ))),
        _ => Err(CliError::environment(anyhow::anyhow!(
            "worker failed (exit {code})"
        ))),
    }
}
