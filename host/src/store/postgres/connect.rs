//! `storage.url` → a connection config and a TLS connector, with `sslmode`
//! as libpq means it:
//! - `disable`: plain TCP;
//! - `prefer` (the default) and `require`: TLS (for `prefer`, if the server
//!   offers it), without checking the server's certificate;
//! - `verify-ca` and `verify-full`: TLS, and the certificate must chain to
//!   `sslrootcert=FILE` (PEM), or to the public web roots when it is not
//!   given. Both also check the host name.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// `sslmode` and `sslrootcert` are read here; the rest of the URL goes to
/// the driver.
pub fn config(url: &str) -> anyhow::Result<(tokio_postgres::Config, MakeRustlsConnect)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut sslmode = "prefer".to_string();
    let mut rootcert = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => sslmode = v.to_string(),
            "sslrootcert" => rootcert = Some(v.to_string()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let mut pg = tokio_postgres::Config::from_str(&url)
        .map_err(|e| anyhow::anyhow!("storage.url is not a valid PostgreSQL URL: {e}"))?;
    if pg.get_dbname().is_none() {
        bail!("storage.url names no database: postgres://USER:PASSWORD@HOST:PORT/DATABASE");
    }
    pg.application_name("wasmhook");
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(std::time::Duration::from_secs(10));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let tls = match sslmode.as_str() {
        "disable" | "allow" | "prefer" | "require" => {
            pg.ssl_mode(match sslmode.as_str() {
                "disable" => SslMode::Disable,
                "require" => SslMode::Require,
                _ => SslMode::Prefer,
            });
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth()
        }
        "verify-ca" | "verify-full" => {
            pg.ssl_mode(SslMode::Require);
            let mut roots = RootCertStore::empty();
            match &rootcert {
                Some(path) => {
                    for cert in CertificateDer::pem_file_iter(path)
                        .with_context(|| format!("storage.url: cannot read sslrootcert {path}"))?
                    {
                        let cert = cert.with_context(|| {
                            format!("storage.url: sslrootcert {path} holds a bad certificate")
                        })?;
                        roots
                            .add(cert)
                            .with_context(|| format!("storage.url: sslrootcert {path}"))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        other => bail!(
            "storage.url: sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ),
    };
    Ok((pg, MakeRustlsConnect::new(tls)))
}

/// `prefer` and `require`: encrypted, but any certificate will do (as with
/// libpq). Signatures are still checked, so the session is with the holder
/// of the key the certificate names.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_ours_and_the_rest_goes_to_the_driver() {
        let (pg, _) =
            config("postgres://u:p@127.0.0.1:5433/db?sslmode=disable&connect_timeout=3").unwrap();
        assert_eq!(pg.get_ssl_mode(), SslMode::Disable);
        assert_eq!(pg.get_dbname(), Some("db"));
        assert_eq!(
            pg.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        let (pg, _) = config("postgresql://u@localhost/db?sslmode=verify-full").unwrap();
        assert_eq!(pg.get_ssl_mode(), SslMode::Require);
        let (pg, _) = config("postgres://u@localhost/db").unwrap();
        assert_eq!(pg.get_ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let err = |url: &str| config(url).err().unwrap().to_string();
        assert!(err("postgres://u@h/db?sslmode=sometimes").contains("sslmode=sometimes"));
        assert!(err("postgres://u@h:notaport/db").contains("not a valid PostgreSQL URL"));
        assert!(err("postgres://u@h").contains("names no database"));
        assert!(
            err("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
                .contains("cannot read sslrootcert")
        );
    }
}
