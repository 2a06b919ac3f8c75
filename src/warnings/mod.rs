//! Official warnings (CAP 1.2 bulletins). This module holds, for now, only
//! the read model other rooms consume ([`WarningView`]); the parser,
//! validator and store come with it.

mod view;

pub use view::{WarningState, WarningView};
