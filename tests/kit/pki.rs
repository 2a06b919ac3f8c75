//! A private PKI for HTTPS receivers: a CA, a server certificate for
//! `localhost` and a client certificate for mutual TLS, written as PEM
//! files (for commune-ioc's config) and as a rustls server config that
//! requires a client certificate signed by the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The files and the server side of one PKI.
pub struct Pki {
    /// The CA certificate (PEM): `ca_file` of a delivery target.
    pub ca: PathBuf,
    /// The client certificate (PEM): `client_cert`.
    pub client_cert: PathBuf,
    /// Its key (PKCS#8 PEM): `client_key`.
    pub client_key: PathBuf,
    /// The client certificate's common name.
    pub client_cn: String,
    /// The server certificate for `localhost` (PEM), for servers run as
    /// processes (nats-server's `tls { cert_file }`).
    pub server_cert: PathBuf,
    /// Its key (PKCS#8 PEM).
    pub server_key: PathBuf,
    /// The client certificate (DER), as a receiver sees it.
    pub client_der: Vec<u8>,
    /// A rustls server config for `localhost` that requires a client
    /// certificate signed by the CA.
    pub server: Arc<rustls::ServerConfig>,
    /// The same without client authentication.
    pub server_one_way: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// Make the CA and both certificates, and write the PEM files to `dir`.
    pub fn create(dir: &Path, client_cn: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "CA thử nghiệm tỉnh Lai Châu");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA cert");

        let server_key = KeyPair::generate().expect("server key");
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &ca).expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut cp = CertificateParams::new(Vec::<String>::new()).expect("client params");
        cp.distinguished_name.push(DnType::CommonName, client_cn);
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = cp.signed_by(&client_key, &ca).expect("client cert");

        let pki = Pki {
            ca: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            client_cn: client_cn.to_owned(),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_der: client.der().to_vec(),
            server: Arc::new(server_config(&ca, &server, &server_key, true)),
            server_one_way: Arc::new(server_config(&ca, &server, &server_key, false)),
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.client_cert, client.pem()).unwrap();
        std::fs::write(&pki.client_key, client_key.serialize_pem()).unwrap();
        std::fs::write(&pki.server_cert, server.pem()).unwrap();
        std::fs::write(&pki.server_key, server_key.serialize_pem()).unwrap();
        pki
    }
}

fn server_config(
    ca: &CertifiedIssuer<'_, KeyPair>,
    server: &rcgen::Certificate,
    key: &KeyPair,
    require_client: bool,
) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = if require_client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("CA as a root");
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let chain: Vec<CertificateDer<'static>> = vec![server.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}
