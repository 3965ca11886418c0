//! The one-shot subcommands, one file each: `check-config`, `probe`, `recover`, `detect`, and
//! `pause`/`resume`/`pause --list` (clients of a running medic).

mod check_config;
mod detect;
mod pause;
mod probe;
mod recover;

pub use check_config::check_config;
pub use detect::{detect, detect_with};
pub use pause::{list_pauses, pause, resume, PauseCommand, Remote};
pub use probe::probe;
pub use recover::{recover, RecoverRequest};
