//! `ajar serve`: validated flags → `ServeConfig` → `ajar_server::run` until
//! SIGTERM or SIGINT.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use ajar_domain::policy::Limits;
use ajar_server::config::{ConnectionLimits, FirstStart, ServeConfig, TlsSource};

use crate::error::UsageError;
use crate::flags::{LogFormat, ServeArgs};

/// The checks clap cannot express, and the config they yield.
pub fn config(args: &ServeArgs) -> Result<ServeConfig, UsageError> {
    if args.min_max_request_duration > args.max_max_request_duration {
        return Err(UsageError::new(format!(
            "--min-max-request-duration {} is longer than --max-max-request-duration {}; the minimum must not exceed the maximum",
            args.min_max_request_duration, args.max_max_request_duration
        )));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsSource::Given { cert: cert.clone(), key: key.clone() },
        (None, None) => TlsSource::SelfSigned { extra_sans: args.sans.clone() },
        // clap's `requires` already refuses these; kept for direct callers.
        _ => {
            return Err(UsageError::new("give --tls-cert and --tls-key together, or neither for a self-signed certificate"));
        }
    };
    // A bad OIDC file is a usage error, found before anything starts.
    let oidc = match &args.oidc_config {
        Some(path) => ajar_server::oidc::config_file::read(path).map_err(UsageError::new)?,
        None => Vec::new(),
    };
    Ok(ServeConfig {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        tls,
        first_start: FirstStart {
            subscription: args.subscription_id.clone(),
            resource_group: args.resource_group.clone(),
            location: args.location.clone(),
        },
        limits: Limits { min_max_duration: args.min_max_request_duration, max_max_duration: args.max_max_request_duration },
        page_size: args.page_size,
        max_body_bytes: args.max_body_bytes,
        trusted_proxies: args.trusted_proxies.clone(),
        oidc,
        connections: ConnectionLimits {
            max_connections: args.max_connections,
            max_per_source: args.max_connections_per_address,
            // A proxy carries everyone's connections; its own limits are what stand in for these.
            unlimited_sources: args.trusted_proxies.clone(),
            tls_handshake_timeout: Duration::from_secs(args.tls_handshake_timeout),
            header_read_timeout: Duration::from_secs(args.header_read_timeout),
        },
    })
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: log files and journald get plain text.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed at once, so a
/// signal that arrives before anyone waits is not lost.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    init_logging(args.log_format);
    ajar_server::run(config, shutdown_signal()?).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Cli, Command};

    fn check(args: &[&str], expected: Result<&str, &str>) {
        let cli = Cli::try_parse_from(["ajar", "serve", "--data-dir", "/d"].iter().chain(args)).unwrap();
        let Command::Serve(serve) = cli.command else { panic!("not serve") };
        match (config(&serve), expected) {
            (Ok(c), Ok(shape)) => assert_eq!(
                format!("{} {:?} {} {} {}", c.listen, c.tls, c.limits.min_max_duration, c.limits.max_max_duration, c.page_size),
                shape,
                "{args:?}"
            ),
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{args:?}: {e}"),
            (got, want) => panic!("{args:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn builds_the_config() {
        check(&[], Ok("127.0.0.1:8443 SelfSigned { extra_sans: [] } PT5M P1D 100"));
        check(
            &["--san", "jit.example", "--san", "10.0.0.1", "--page-size", "7"],
            Ok(r#"127.0.0.1:8443 SelfSigned { extra_sans: ["jit.example", "10.0.0.1"] } PT5M P1D 7"#),
        );
        check(
            &["--listen", "0.0.0.0:9443", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
            Ok(r#"0.0.0.0:9443 Given { cert: "c.pem", key: "k.pem" } PT5M P1D 100"#),
        );
        check(
            &["--min-max-request-duration", "PT1H", "--max-max-request-duration", "PT1H"],
            Ok("127.0.0.1:8443 SelfSigned { extra_sans: [] } PT1H PT1H 100"),
        );
        check(&["--min-max-request-duration", "PT2H", "--max-max-request-duration", "PT1H"], Err("must not exceed"));
    }
}
