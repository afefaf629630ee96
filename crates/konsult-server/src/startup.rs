//! What happens before the first request: checks of the listen address,
//! the data directory, the data-at-rest key, the database and TLS.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use konsult_store::database::describe_url;
use konsult_store::{Cipher, Store, StoreError};

use crate::config::Settings;

/// Refuses plain HTTP on a non-loopback address unless a TLS-terminating
/// proxy is declared. (Without a certificate configured, a non-loopback
/// listener gets a generated one, so this only bites if TLS is disabled.)
pub fn check_listen(settings: &Settings) -> anyhow::Result<()> {
    if settings.tls.cert.is_some() != settings.tls.key.is_some() {
        anyhow::bail!("tls.cert and tls.key must be given together");
    }
    if !settings.listen.ip().is_loopback() && !settings.serves_tls() && !settings.tls.behind_proxy {
        anyhow::bail!(
            "refusing to serve plain HTTP on {}: configure tls.cert/tls.key, or set tls.behind_proxy = true if a TLS-terminating proxy is in front",
            settings.listen
        );
    }
    Ok(())
}

/// Creates the data directory (0700) when needed.
fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions on {}", dir.display()))?;
    }
    Ok(())
}

/// Writes a new file readable only by its owner; fails if it exists.
fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Reads the data-at-rest key, creating a random one on first run.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<Cipher> {
    if !path.exists() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            ensure_data_dir(parent)?;
        }
        write_private_file(path, &Cipher::generate_key_base64())?;
        tracing::info!("created a new data-at-rest key file");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    Cipher::from_base64(&text)
        .with_context(|| format!("the key file {} is not valid", path.display()))
}

/// Opens (and migrates) the configured database.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.database_url();
    if settings.database_url.is_none() {
        ensure_data_dir(&settings.data_dir)?;
    }
    let cipher = load_or_create_key(&settings.key_file())?;
    let describe = |e: StoreError| match e {
        // Names the database itself, never its user or password.
        StoreError::Unreachable { .. } => anyhow::anyhow!("{e}"),
        StoreError::Database(e) => anyhow::anyhow!("cannot open {}: {e}", describe_url(&url)),
        e => anyhow::anyhow!("cannot open {}: {e}", describe_url(&url)),
    };
    let store = Store::connect_with(&url, cipher, &settings.pool_settings())
        .await
        .map_err(describe)?;
    let marker = audit_keyed_marker(&settings.key_file());
    if !marker.exists() {
        let rekeyed = store.rekey_audit_chains().await.map_err(describe)?;
        if rekeyed > 0 {
            tracing::info!(rekeyed, "audit chains from before the audit key re-keyed");
        }
        write_private_file(
            &marker,
            "The audit chains of this installation are keyed; they are never re-keyed again.\n",
        )?;
    }
    Ok(store)
}

/// `<key file>.audit-keyed`: present once this installation re-keyed the
/// audit chains written before the audit key ([`open_store`] does it the
/// first time it opens the database, and never again). It lives next to the
/// key, out of reach of someone who can only write the database: they could
/// otherwise recompute a tampered chain unkeyed and have the next start
/// re-key it as intact.
pub fn audit_keyed_marker(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".audit-keyed");
    PathBuf::from(name)
}

/// The rustls configuration: the configured certificate, or a self-signed
/// one generated into the data directory on first use (for `localhost`, the
/// listen IP and `turn.tls_host`; delete it to have it made again after
/// changing those).
pub async fn tls_config(
    settings: &Settings,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = match (&settings.tls.cert, &settings.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            ensure_data_dir(&settings.data_dir)?;
            let cert = settings.data_dir.join("self-signed-cert.pem");
            let key = settings.data_dir.join("self-signed-key.pem");
            if !cert.exists() || !key.exists() {
                let mut names = vec!["localhost".to_owned()];
                names.push(settings.listen.ip().to_string());
                if let Some(host) = &settings.turn.tls_host {
                    names.push(crate::relay::TlsHost::parse(host)?.as_str().to_owned());
                }
                let generated = rcgen::generate_simple_self_signed(names)
                    .context("cannot generate a self-signed certificate")?;
                let _ = std::fs::remove_file(&cert);
                let _ = std::fs::remove_file(&key);
                write_private_file(&key, &generated.key_pair.serialize_pem())?;
                write_private_file(&cert, &generated.cert.pem())?;
                tracing::warn!("serving a generated self-signed certificate; configure tls.cert and tls.key for production");
            }
            (cert, key)
        }
    };
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
        .await
        .with_context(|| format!("cannot load the TLS certificate {}", cert.display()))
}

/// Whether the certificate in the PEM file `cert` (its first, the
/// server's own) is valid for `host`: the relay's host name must be covered
/// for browsers to accept TURN over TLS.
pub fn certificate_covers(cert: &Path, host: &crate::relay::TlsHost) -> anyhow::Result<bool> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let der = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
        .next()
        .with_context(|| format!("no certificate in {}", cert.display()))?
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
    let end_entity = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| anyhow::anyhow!("cannot parse the TLS certificate {}: {e}", cert.display()))?;
    let name =
        ServerName::try_from(host.as_str()).map_err(|e| anyhow::anyhow!("turn.tls_host: {e}"))?;
    Ok(end_entity.verify_is_valid_for_subject_name(&name).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_plain_http_is_refused_unless_behind_a_proxy() {
        let mut s = Settings {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Settings::default()
        };
        // Without a certificate, a public listener generates one: allowed.
        assert!(check_listen(&s).is_ok());
        s.tls.behind_proxy = true;
        assert!(check_listen(&s).is_ok());
        s.tls.cert = Some("cert.pem".into());
        assert!(check_listen(&s).is_err(), "cert without key");
    }

    #[test]
    fn a_certificate_covers_the_relay_host_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let generated = rcgen::generate_simple_self_signed(vec![
            "video.klinik.example".to_owned(),
            "turn.klinik.example".to_owned(),
        ])
        .unwrap();
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        let host = |h| crate::relay::TlsHost::parse(h).unwrap();
        assert!(certificate_covers(&cert, &host("turn.klinik.example")).unwrap());
        assert!(certificate_covers(&cert, &host("TURN.klinik.example")).unwrap());
        assert!(!certificate_covers(&cert, &host("relay.klinik.example")).unwrap());
        assert!(certificate_covers(&dir.path().join("missing.pem"), &host("a.b")).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("data.key");
        let a = load_or_create_key(&path).unwrap();
        let sealed = a.seal("x", "hello");
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap(), "hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
