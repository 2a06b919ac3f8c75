//! The process-wide TLS crypto provider.
//!
//! Two of our dependencies enable different rustls providers (rumqttc's
//! tokio-rustls brings aws-lc-rs, reqwest brings ring). With both compiled
//! in, rustls cannot pick one by itself and panics at the first TLS
//! connection that uses the process default (the MQTT client's). The binary
//! installs ring first thing; library users call this before TLS.

/// Install ring as the process's rustls provider (once; later calls and a
/// provider installed by someone else are left alone).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn after_install_a_default_provider_exists() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
