//! drydock's [`Runtime`](drydock_core::runtime::Runtime) on the Docker Engine, through bollard:
//! [`DockerRuntime`] on one engine, and [`SwarmRuntime`] on Docker Swarm (its module says how
//! it places, moves and reaches machines). bollard's API changes between releases, so it stays
//! inside this crate: nothing public here names a bollard type.
//!
//! What a reader of core's `runtime.rs` should know about the one-engine implementation:
//!
//! - **Objects**: per workspace a bridge network `drydock-<instance>-<ws>` (machines reach each
//!   other by machine name: alias and hostname), a volume `drydock-<instance>-<ws>-projects`
//!   mounted at `/projects` in every machine, and a container `drydock-<instance>-<ws>-<machine>`
//!   per machine; all labelled with the instance and workspace (containers also the machine).
//!   Every list and removal filters by the instance label, so instances sharing an engine never
//!   touch each other's objects.
//! - **Containers**: `Init: true`; `Tty` and `OpenStdin` so that a command that would exit at
//!   once (a plain shell) keeps running, and nobody attaches. Memory and memory+swap are both the
//!   machine's limit. Ports are exposed, never published on the host. A machine whose command is
//!   a shell waiting on that TTY ignores SIGTERM, so it gets `StopSignal: SIGHUP` (what closing a
//!   terminal sends); other commands keep their image's stop signal.
//! - **start** removes containers the workspace still has (a died machine, an interrupted
//!   start; a second start of a running workspace thus restarts it), checks images (pulling a
//!   missing one within `pull_timeout`; with no registry the pull fails at once with the
//!   engine's reason: `ImageUnavailable`), then creates the network and volume when missing and
//!   the machines in `depends_on` order, each checked running once started. Every machine must
//!   still run `start_settle` (20 ms) after the last one started, which catches commands that
//!   fail at once; a later death is an event. A failed start removes its containers and the
//!   network and volume it created (a volume that existed keeps its files); its error carries
//!   the machine's exit reason and last output. A start future dropped midway leaves what it
//!   made so far: the service's reconciliation stops it.
//! - **stop** stops containers with `stop_timeout`, then removes them; the network and volume
//!   stay. **remove** also removes the network and volume. Snapshot images stay: they are
//!   separate, user-made objects.
//! - **node**: the engine's `docker info` `Name` (its host name), read once at connect.
//! - **events**: the engine's `die` events of this instance's containers become `MachineDied`,
//!   with the exit code, the killing signal or the OOM killer as reason (`oom` events alone are
//!   no death: a process killed inside a machine that lives on). Deaths drydock accounts for
//!   itself are left out: those of containers it is stopping or removing (stop, remove, a start
//!   replacing leftovers, a failed start's clean-up), and those of a start's machines before
//!   the start's last check (the start fails and its error says why). The runtime object
//!   remembers those container ids (a minute after the operation), so only the streams of the
//!   same `DockerRuntime` (or its clones) know them; deaths are matched by the engine's event
//!   time, which
//!   assumes the engine's clock is the master's (a local engine). The stream ends when the
//!   engine's does: subscribe again and reconcile.
//! - **exec** runs without a TTY and returns stdout and stderr apart and exactly; on timeout the
//!   command goes on in the machine (the engine has no way to end an exec). **terminal** runs
//!   bash where the image has it, else sh, in `/projects`, with `TERM=xterm-256color`.
//!   (bollard reads a TTY's output as frames when a chunk starts with a byte 0–2; terminal
//!   output practically never does.)

mod error;
mod events;
pub mod names;
pub mod projects_sync;
mod runtime;
pub mod swarm;
pub mod testing;
pub mod testing_registry;
pub mod testing_swarm;
mod volumes;

pub use runtime::{DockerRuntime, DockerSettings, Endpoint};
pub use swarm::{SwarmRuntime, SwarmSettings};
pub use volumes::{ByteStream, HELPER_ROOT, LABEL_HELPER, VolumesHelper};
