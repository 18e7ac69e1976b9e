//! TLS to the database, as libpq reads `sslmode` and `sslrootcert` from
//! `store.url`: `disable` connects in plain text; `prefer` (the default)
//! encrypts when the server offers it and `require` always, neither checking
//! the server's certificate (unless `require` is given `sslrootcert`: then as
//! `verify-ca`); `verify-ca` checks that the certificate chains to a trusted
//! root, and `verify-full` also that it names the host connected to. Roots
//! are the PEM file `sslrootcert` names, or the system's (`sslrootcert=system`,
//! and what `verify-full` uses when none is named); checking a chain to the
//! system's roots without the name is refused, as libpq does.

use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What connects to the database: its settings, and TLS as they ask.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// Reads `url` (a `postgres://` URL or a `key=value` string): the
/// connection's settings, with `sslmode` and `sslrootcert` taken out and
/// turned into its TLS.
pub fn parse(url: &str) -> anyhow::Result<Connection> {
    let (rest, mode, roots) = take_tls_settings(url);
    let mut config: tokio_postgres::Config = rest.parse().context("store.url")?;
    let system = roots.as_deref().is_none_or(|r| r == "system");
    let (ssl_mode, check) = match mode.as_deref() {
        None | Some("prefer") => (SslMode::Prefer, Check::Nothing),
        Some("disable") => (SslMode::Disable, Check::Nothing),
        Some("require") if roots.is_some() => (SslMode::Require, Check::Chain),
        Some("require") => (SslMode::Require, Check::Nothing),
        Some("verify-ca") => (SslMode::Require, Check::Chain),
        Some("verify-full") => (SslMode::Require, Check::ChainAndName),
        Some(other) => {
            anyhow::bail!("store.url: sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full")
        }
    };
    // Any publicly trusted certificate chains to the system's roots: with
    // them, only the name says it is the database's (as libpq refuses too).
    anyhow::ensure!(
        !(check == Check::Chain && system),
        "store.url: checking the certificate's chain but not its name needs sslrootcert naming your CA's \
         PEM file; with the system's roots, use sslmode=verify-full"
    );
    config.ssl_mode(ssl_mode);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => {
            let roots = Arc::new(trusted_roots(roots.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .context("store.url: checking the server's certificate")?;
            Some(webpki)
        }
    };
    let verifier = Arc::new(Verifier {
        chain,
        names: check == Check::ChainAndName,
        provider: Arc::clone(&provider),
    });
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS to the database")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

/// `url` without its `sslmode` and `sslrootcert` (from a URL's query, or
/// among a `key=value` string's pairs), and their values.
fn take_tls_settings(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut roots) = (None, None);
    let mut take = |pair: &str, decode: fn(&str) -> String| match pair.split_once('=') {
        Some(("sslmode", value)) => {
            mode = Some(decode(value));
            true
        }
        Some(("sslrootcert", value)) => {
            roots = Some(decode(value));
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let decode = |v: &str| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|pair| !take(pair, decode)).collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        let decode = |v: &str| v.trim_matches('\'').to_owned();
        let kept: Vec<&str> = url.split_whitespace().filter(|pair| !take(pair, decode)).collect();
        kept.join(" ")
    };
    (rest, mode, roots)
}

/// The roots a server's certificate must chain to: those of the PEM file
/// `named`, or the system's.
fn trusted_roots(named: Option<&str>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match named {
        None | Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            anyhow::ensure!(
                added > 0,
                "store.url: no trusted root certificates on this system ({} errors reading them); \
                 name a PEM file with sslrootcert",
                found.errors.len()
            );
        }
        Some(path) => {
            for cert in
                CertificateDer::pem_file_iter(path).with_context(|| format!("store.url: reading sslrootcert {path}"))?
            {
                let cert = cert.with_context(|| format!("store.url: reading sslrootcert {path}"))?;
                roots
                    .add(cert)
                    .with_context(|| format!("store.url: a certificate of sslrootcert {path}"))?;
            }
            anyhow::ensure!(!roots.is_empty(), "store.url: sslrootcert {path} holds no certificate");
        }
    }
    Ok(roots)
}

/// Checks the server's certificate as far as `sslmode` asks: not at all
/// (libpq's `prefer` and `require`: the connection is encrypted, but to
/// whoever answers), its chain to a trusted root (`verify-ca`), or also its
/// name (`verify-full`). The handshake's signatures are always checked.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    names: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_and_taken_out() {
        let c = parse("postgres://u@db.example:5432/w?sslmode=disable&connect_timeout=5").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.config.get_connect_timeout(), Some(&std::time::Duration::from_secs(5)));
        assert_eq!(
            parse("postgres://u@h/w").unwrap().config.get_ssl_mode(),
            SslMode::Prefer
        );
        assert_eq!(
            parse("postgres://u@h/w?sslmode=require").unwrap().config.get_ssl_mode(),
            SslMode::Require
        );
        let bad = parse("postgres://u@h/w?sslmode=sometimes").err().unwrap();
        assert!(format!("{bad:#}").contains("not one of"), "{bad:#}");
        // Other settings pass through as they were written, in either form.
        let c = parse("postgres://u@h1:5432,h2:5433/w?options=-c%20statement_timeout%3D5000&sslmode=require").unwrap();
        assert_eq!(c.config.get_options(), Some("-c statement_timeout=5000"));
        assert_eq!(c.config.get_hosts().len(), 2);
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
        let c = parse("host=db user=u dbname=w sslmode=disable").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.config.get_dbname(), Some("w"));
        // A chain to the system's roots, unnamed, proves nothing.
        for weak in ["sslmode=verify-ca", "sslmode=require&sslrootcert=system"] {
            let refused = parse(&format!("postgres://u@h/w?{weak}")).err().unwrap();
            assert!(format!("{refused:#}").contains("verify-full"), "{refused:#}");
        }
        let missing = parse("postgres://u@h/w?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap();
        assert!(format!("{missing:#}").contains("/nonexistent.pem"), "{missing:#}");
    }
}
