/*!
Ctrl-C: the first one asks long work to stop cleanly (campaigns stop dispatching, finish what is in
flight, skip minimization and still write their reports); a second one exits at once.
*/

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static PRESSES: AtomicUsize = AtomicUsize::new(0);

/// The flag that Ctrl-C sets, installing the handler on first use.
pub fn flag() -> Arc<AtomicBool> {
    Arc::clone(FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = Arc::clone(&flag);
        // Failing to install (a handler already set by an embedding program) leaves Ctrl-C's default
        // behaviour: the work is lost but nothing else breaks.
        let _ = ctrlc::set_handler(move || {
            if PRESSES.fetch_add(1, Ordering::SeqCst) >= 1 {
                std::process::exit(130);
            }
            eprintln!("interrupted: finishing cases in flight and writing the report (Ctrl-C again to quit now)");
            handler_flag.store(true, Ordering::SeqCst);
        });
        flag
    }))
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}
