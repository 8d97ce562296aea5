//! The Aeron C media driver, run inside the process.

use crate::error::TransportError;
use rusteron_media_driver::bindings::aeron_threading_mode_enum;
use rusteron_media_driver::{AeronDriver, AeronDriverContext, IntoCString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

trait DriverContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, TransportError>;
}

impl<T> DriverContext<T> for Result<T, rusteron_media_driver::AeronCError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, TransportError> {
        self.map_err(|error| TransportError::Driver(format!("{}: {error}", what())))
    }
}

/// How the driver spreads its agents over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadingMode {
    /// Conductor, sender and receiver share one thread: the right choice on a 2-core machine.
    #[default]
    Shared,
    /// Sender and receiver share a thread, the conductor has its own.
    SharedNetwork,
    /// One thread each.
    Dedicated,
}

impl std::str::FromStr for ThreadingMode {
    type Err = TransportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "shared" => Ok(Self::Shared),
            "shared-network" => Ok(Self::SharedNetwork),
            "dedicated" => Ok(Self::Dedicated),
            other => Err(TransportError::Invalid(format!(
                "threading mode {other:?}: expected shared, shared-network or dedicated"
            ))),
        }
    }
}

/// Settings of an embedded media driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The Aeron directory (CnC file, log buffers). `None`: Aeron's default (`/dev/shm/aeron-<user>`).
    pub dir: Option<String>,
    /// Threading of the driver's agents.
    pub threading: ThreadingMode,
    /// Delete the directory when the driver starts, without checking for a live driver in it.
    /// Off by default: then a live driver in the directory is an error and a dead one's files are
    /// replaced.
    pub delete_dir_on_start: bool,
    /// Delete the directory when the driver stops.
    pub delete_dir_on_shutdown: bool,
    /// Term length of IPC publications (power of two, 64 KiB .. 1 GiB). `None`: Aeron's default, 64 MiB.
    pub ipc_term_length: Option<usize>,
    /// Term length of network publications. `None`: Aeron's default, 16 MiB.
    pub term_length: Option<usize>,
    /// Back log buffers with sparse files: faster to create, pages allocated on first touch.
    pub sparse_terms: bool,
    /// Let a spy subscription (`aeron-spy:`) count as a connected subscriber of a UDP publication,
    /// so a publication whose only reader is a local recording is not held back.
    pub spies_simulate_connection: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            dir: None,
            threading: ThreadingMode::Shared,
            // Never true by default: Aeron checks for a live driver in the directory only when it
            // does not delete it first, and deleting a live driver's files breaks its clients.
            delete_dir_on_start: false,
            delete_dir_on_shutdown: true,
            ipc_term_length: None,
            term_length: None,
            sparse_terms: true,
            spies_simulate_connection: false,
        }
    }
}

/// An Aeron media driver running on a thread of this process; stopped and joined on drop.
pub struct MediaDriver {
    dir: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MediaDriver {
    /// Start a driver with `config` and wait until it serves clients.
    ///
    /// # Errors
    /// The driver could not be configured or started (a directory in use by a live driver, an
    /// invalid setting, no shared memory).
    pub fn launch(config: &DriverConfig) -> Result<Self, TransportError> {
        let context = AeronDriverContext::new().context(|| "driver context".into())?;
        if let Some(dir) = &config.dir {
            context
                .set_dir(&dir.clone().into_c_string())
                .context(|| format!("driver dir {dir}"))?;
        }
        let mode = match config.threading {
            ThreadingMode::Shared => aeron_threading_mode_enum::AERON_THREADING_MODE_SHARED,
            ThreadingMode::SharedNetwork => {
                aeron_threading_mode_enum::AERON_THREADING_MODE_SHARED_NETWORK
            }
            ThreadingMode::Dedicated => aeron_threading_mode_enum::AERON_THREADING_MODE_DEDICATED,
        };
        context
            .set_threading_mode(mode)
            .context(|| "threading mode".into())?;
        context
            .set_dir_delete_on_start(config.delete_dir_on_start)
            .context(|| "dir delete on start".into())?;
        // Set only once this driver runs: a driver that fails to start (another one lives in the
        // directory) must not delete the directory when its context is dropped.
        context
            .set_dir_delete_on_shutdown(false)
            .context(|| "dir delete on shutdown".into())?;
        let delete_on_shutdown = config.delete_dir_on_shutdown;
        context
            .set_term_buffer_sparse_file(config.sparse_terms)
            .context(|| "sparse terms".into())?;
        context
            .set_spies_simulate_connection(config.spies_simulate_connection)
            .context(|| "spies simulate connection".into())?;
        if let Some(length) = config.ipc_term_length {
            context
                .set_ipc_term_buffer_length(length)
                .context(|| format!("ipc term length {length}"))?;
        }
        if let Some(length) = config.term_length {
            context
                .set_term_buffer_length(length)
                .context(|| format!("term length {length}"))?;
        }
        let dir = context.get_dir().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = mpsc::channel::<Result<(), String>>();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("aeron-driver".into())
            .spawn(move || {
                let driver = match AeronDriver::new(&context).and_then(|driver| {
                    driver.start(true)?;
                    context.set_dir_delete_on_shutdown(delete_on_shutdown)?;
                    Ok(driver)
                }) {
                    Ok(driver) => driver,
                    Err(error) => {
                        let _ = started_tx.send(Err(error.to_string()));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(()));
                while !thread_stop.load(Ordering::Acquire) {
                    match driver.main_do_work() {
                        Ok(work) => driver.main_idle_strategy(work),
                        Err(error) => {
                            tracing::error!("media driver stopped on error: {error}");
                            break;
                        }
                    }
                }
            })
            .map_err(|error| TransportError::Driver(format!("spawn driver thread: {error}")))?;
        match started_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(Self {
                dir,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(message)) => {
                let _ = thread.join();
                Err(TransportError::Driver(format!("start in {dir}: {message}")))
            }
            Err(_) => {
                stop.store(true, Ordering::Release);
                Err(TransportError::Driver(format!(
                    "start in {dir}: no answer within 30 s"
                )))
            }
        }
    }

    /// The Aeron directory that clients connect to.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Whether the driver thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }
}

impl Drop for MediaDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Aeron's default directory for this user (`/dev/shm/aeron-<user>` on Linux), or `AERON_DIR`.
pub fn default_aeron_dir() -> String {
    if let Ok(dir) = std::env::var("AERON_DIR") {
        return dir;
    }
    AeronDriverContext::new()
        .map(|context| context.get_dir().to_string())
        .unwrap_or_else(|_| "/dev/shm/aeron".to_string())
}
