//! The agent's HTTPS client: it trusts only the CA it was given and never
//! speaks plain HTTP.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;

use ajar_api::agent::{DesiredStateOut, EnrollIn, EnrollOut, MAX_WAIT_SECONDS, ReportIn};

pub struct ServerClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl ServerClient {
    pub fn new(server: &str, ca_pem: &[u8]) -> anyhow::Result<ServerClient> {
        if !server.starts_with("https://") {
            bail!("the server URL must start with https:// (got '{server}')");
        }
        let ca = reqwest::Certificate::from_pem(ca_pem).context("reading the CA certificate")?;
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .connect_timeout(Duration::from_secs(5))
            // Below the server's keep-alive bound (10 s), so a connection it is about to close is not reused.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTPS client")?;
        Ok(ServerClient { base: server.trim_end_matches('/').to_owned(), http, token: None })
    }

    pub fn with_token(mut self, token: &str) -> ServerClient {
        self.token = Some(token.to_owned());
        self
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn error_of(resp: reqwest::Response) -> anyhow::Error {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        anyhow::anyhow!("the server answered {status}: {body}")
    }

    pub async fn enroll(&self, join_token: &str, body: &EnrollIn) -> anyhow::Result<EnrollOut> {
        let resp = self
            .http
            .post(format!("{}/ajar/v1/agents/enroll", self.base))
            .bearer_auth(join_token)
            .json(body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .context("enrolling with the server")?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::error_of(resp).await.context("enrolment refused"));
        }
        resp.json().await.context("reading the enrolment answer")
    }

    /// Waits (up to `MAX_WAIT_SECONDS`) for a desired state other than `etag`.
    pub async fn desired_state(&self, etag: Option<&str>) -> anyhow::Result<DesiredStateOut> {
        let mut req =
            self.http.get(format!("{}/ajar/v1/agent/desiredState", self.base)).timeout(Duration::from_secs(MAX_WAIT_SECONDS + 10));
        if let Some(e) = etag {
            req = req.query(&[("etag", e), ("waitSeconds", &(MAX_WAIT_SECONDS - 5).to_string())]);
        }
        let resp = self.auth(req).send().await.context("asking for the desired state")?;
        if resp.status() != StatusCode::OK {
            return Err(Self::error_of(resp).await);
        }
        resp.json().await.context("reading the desired state")
    }

    pub async fn report(&self, report: &ReportIn) -> anyhow::Result<()> {
        let req = self.http.post(format!("{}/ajar/v1/agent/report", self.base)).json(report).timeout(Duration::from_secs(10));
        let resp = self.auth(req).send().await.context("reporting to the server")?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(Self::error_of(resp).await);
        }
        Ok(())
    }
}
