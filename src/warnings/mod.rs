//! Official disaster warnings: CAP 1.2 bulletins (MQTT
//! `ioc/{commune}/warning/cap`, `POST /api/warnings`, feed pollers) parsed,
//! validated, profiled (Vietnamese risk level, hazard), matched to the
//! commune's villages, chained (Update/Cancel), expired and stored.

mod view;

pub use view::{WarningState, WarningView};
