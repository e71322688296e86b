//! gobetween-compatible configuration: model, parsing, checks and rendering.

pub mod depth;
pub mod duration;
pub mod error;
pub mod load;
pub mod locate;
pub mod loose;
pub mod model;
#[cfg(test)]
mod reference;
pub mod repeated;
pub mod resolve;
pub mod support;
pub mod tolerant;
pub mod validate;

pub use duration::{GoDuration, WrittenDuration};
pub use error::{enforce_strict, ConfigError, ConfigWarning};
pub use load::{load_file, parse_as, parse_config, parse_text, render, substitute_env, Format};
pub use loose::{LogFormat, LogLevel, LooseDuration};
pub use model::*;
pub use resolve::{CheckSettings, ServerSettings, UdpSettings};
pub use support::{refuse_unsupported, unsupported_keys};
