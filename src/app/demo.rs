//! The demo: the example site on this box, with the embedded broker, and its
//! own login.

use std::path::PathBuf;

use super::{kiosk, Actor, AppError};
use crate::auth::{AccountError, Accounts, Role};
use crate::config::Config;

/// Label of the demo's kiosk token.
pub const DEMO_KIOSK: &str = "Màn hình chạy thử";

/// Turn a site config into the demo's: the embedded broker on loopback at
/// `mqtt_port` without login or TLS, and the store at `store` when given.
pub fn prepare(cfg: &mut Config, mqtt_port: u16, store: Option<PathBuf>) {
    cfg.mqtt.embedded = true;
    cfg.mqtt.host = "127.0.0.1".into();
    cfg.mqtt.port = mqtt_port;
    cfg.mqtt.username = None;
    cfg.mqtt.password = None;
    cfg.mqtt.tls = false;
    if let Some(s) = store {
        cfg.store.path = s;
    }
}

/// The demo's own login: a `demo` admin with a fresh password and a fresh
/// kiosk token on every start (earlier demo kiosk tokens are revoked).
/// Returns (password, kiosk token).
pub fn login(accounts: &Accounts) -> Result<(String, String), AppError> {
    let password = crate::auth::password::generate(16);
    match accounts.add_user("demo", Role::Admin, &password) {
        Ok(()) => {}
        Err(AccountError::Exists(_)) => accounts.set_password("demo", &password)?,
        Err(e) => return Err(e.into()),
    }
    for k in accounts.kiosk_tokens()? {
        if k.label == DEMO_KIOSK && k.revoked_at.is_none() {
            accounts.revoke_kiosk(k.id)?;
        }
    }
    let actor = Actor {
        name: "demo".into(),
        role: Some(Role::Admin),
        addr: None,
        detail: None,
    };
    let (_, token) = kiosk::create(accounts, &actor, DEMO_KIOSK)?;
    Ok((password, token))
}
