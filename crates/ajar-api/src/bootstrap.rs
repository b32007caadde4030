//! `DATA_DIR/bootstrap.json`: what `ajar serve` writes on first start for the operator (the
//! server's URL, the path of its CA certificate, the subscription, resource group and location
//! it made, an admin token and an agent join token), and what the CLI and the benchmark read
//! their settings from. The server writes every key; a reader takes what is there, so a file
//! cut down by hand (say, without the tokens) still gives the rest.

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "bootstrap.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Path of the CA certificate (PEM); a relative path is relative to the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<String>,
}

/// A key a reader needs is not in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the bootstrap file has no \"{0}\"")]
pub struct MissingKey(pub &'static str);

impl BootstrapFile {
    pub fn parse(bytes: &[u8]) -> Result<BootstrapFile, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The file's bytes: indented JSON, for people to read.
    pub fn render(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    /// Every key, for a reader that needs the whole file as the server writes it; else the first
    /// key that is missing.
    pub fn complete(&self) -> Result<Complete<'_>, MissingKey> {
        fn need<'a>(value: &'a Option<String>, key: &'static str) -> Result<&'a str, MissingKey> {
            value.as_deref().ok_or(MissingKey(key))
        }
        Ok(Complete {
            url: need(&self.url, "url")?,
            ca: need(&self.ca, "ca")?,
            subscription_id: need(&self.subscription_id, "subscriptionId")?,
            resource_group: need(&self.resource_group, "resourceGroup")?,
            location: need(&self.location, "location")?,
            admin_token: need(&self.admin_token, "adminToken")?,
            join_token: need(&self.join_token, "joinToken")?,
        })
    }
}

/// A [`BootstrapFile`] with every key, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete<'a> {
    pub url: &'a str,
    pub ca: &'a str,
    pub subscription_id: &'a str,
    pub resource_group: &'a str,
    pub location: &'a str,
    pub admin_token: &'a str,
    pub join_token: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_server_writes_and_what_is_left_of_it() {
        let file = BootstrapFile {
            url: Some("https://127.0.0.1:8443".into()),
            ca: Some("/data/tls/ca.pem".into()),
            subscription_id: Some("20ff7fc3-e762-44dd-bd96-b71116dcdc23".into()),
            resource_group: Some("default".into()),
            location: Some("local".into()),
            admin_token: Some("ajar_a".into()),
            join_token: Some("ajarjoin_j".into()),
        };
        let bytes = file.render().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "url": "https://127.0.0.1:8443", "ca": "/data/tls/ca.pem",
                "subscriptionId": "20ff7fc3-e762-44dd-bd96-b71116dcdc23", "resourceGroup": "default", "location": "local",
                "adminToken": "ajar_a", "joinToken": "ajarjoin_j"
            })
        );
        assert_eq!(BootstrapFile::parse(&bytes).unwrap(), file);
        assert_eq!(file.complete().unwrap().join_token, "ajarjoin_j");

        let partial = BootstrapFile::parse(br#"{"url": "https://h:8443", "ca": "ca.pem"}"#).unwrap();
        assert_eq!(partial.ca.as_deref(), Some("ca.pem"));
        assert_eq!(partial.admin_token, None);
        assert_eq!(partial.complete().unwrap_err().to_string(), r#"the bootstrap file has no "subscriptionId""#);
        assert!(BootstrapFile::parse(br#"{"url": 1}"#).is_err());
    }
}
