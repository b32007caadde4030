//! Connection settings and defaults. Each comes from its flag, else its
//! environment variable, else the server's `bootstrap.json`; what is still
//! missing when a command needs it is a usage error saying what to set.

use std::path::{Path, PathBuf};

use anyhow::Context;

use ajar_api::bootstrap::BootstrapFile;
use ajar_domain::{Location, PolicyId, PolicyName, ResourceGroup, SubscriptionId, VmId, VmName};

use crate::error::UsageError;
use crate::flags::Conn;

pub const ENV_SERVER: &str = "AJAR_SERVER";
pub const ENV_TOKEN: &str = "AJAR_TOKEN";
pub const ENV_CA: &str = "AJAR_CA";
pub const ENV_BOOTSTRAP: &str = "AJAR_BOOTSTRAP";

/// The file `ajar serve` writes on first start (`DATA_DIR/bootstrap.json`); what it lacks (a
/// partial file still helps) comes from elsewhere or is missing.
pub fn read_bootstrap(path: &Path) -> anyhow::Result<BootstrapFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the bootstrap file {}", path.display()))?;
    BootstrapFile::parse(&bytes).with_context(|| format!("the bootstrap file {} is not the JSON `ajar serve` writes", path.display()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: String,
    pub token: String,
    pub ca: PathBuf,
    pub subscription: Option<SubscriptionId>,
    pub resource_group: Option<ResourceGroup>,
    pub location: Option<Location>,
}

/// An environment variable, with empty meaning unset.
fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl Settings {
    /// Resolves settings from flags, then `env`, then the bootstrap file
    /// (read with `load` when `--bootstrap` or `AJAR_BOOTSTRAP` names one).
    pub fn resolve(
        flags: &Conn,
        env: impl Fn(&str) -> Option<String>,
        load: impl Fn(&Path) -> anyhow::Result<BootstrapFile>,
    ) -> anyhow::Result<Settings> {
        let bootstrap_path = flags.bootstrap.clone().or_else(|| non_empty(env(ENV_BOOTSTRAP)).map(PathBuf::from));
        let boot = match &bootstrap_path {
            Some(path) => load(path)?,
            None => BootstrapFile::default(),
        };
        // A relative CA path in the file is relative to the file, not to the
        // directory the command happens to run in.
        let boot_ca = boot.ca.as_ref().map(|ca| match bootstrap_path.as_deref().and_then(Path::parent) {
            Some(dir) if Path::new(ca).is_relative() => dir.join(ca),
            _ => PathBuf::from(ca),
        });
        let server = flags.server.clone().or_else(|| non_empty(env(ENV_SERVER))).or(boot.url.clone());
        let token = flags.token.clone().or_else(|| non_empty(env(ENV_TOKEN))).or(boot.admin_token.clone());
        let ca = flags.ca.clone().or_else(|| non_empty(env(ENV_CA)).map(PathBuf::from)).or(boot_ca);

        let (Some(server), Some(token), Some(ca)) = (server.clone(), token.clone(), ca.clone()) else {
            let mut missing = Vec::new();
            if server.is_none() {
                missing.push("server URL (--server or AJAR_SERVER)");
            }
            if token.is_none() {
                missing.push("token (--token or AJAR_TOKEN)");
            }
            if ca.is_none() {
                missing.push("CA file (--ca or AJAR_CA)");
            }
            let hint = match &bootstrap_path {
                Some(p) => format!("the bootstrap file {} does not provide them", p.display()),
                None => "or point --bootstrap (AJAR_BOOTSTRAP) at the server's DATA_DIR/bootstrap.json".to_owned(),
            };
            return Err(UsageError::new(format!("missing {}; {hint}", missing.join(", "))).into());
        };

        let from_file = |what: &str, e: &dyn std::fmt::Display| {
            UsageError::new(format!("the bootstrap file's {what} is invalid: {e}; pass --{} instead", what.replace(' ', "-")))
        };
        let subscription = match (&flags.subscription, &boot.subscription_id) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(s)) => Some(s.parse().map_err(|e| from_file("subscription", &e))?),
            (None, None) => None,
        };
        let resource_group = match (&flags.resource_group, &boot.resource_group) {
            (Some(rg), _) => Some(rg.clone()),
            (None, Some(rg)) => Some(rg.parse().map_err(|e| from_file("resource group", &e))?),
            (None, None) => None,
        };
        let location = match (&flags.location, &boot.location) {
            (Some(l), _) => Some(l.clone()),
            (None, Some(l)) => Some(l.parse().map_err(|e| from_file("location", &e))?),
            (None, None) => None,
        };
        Ok(Settings { server, token, ca, subscription, resource_group, location })
    }

    /// From the real environment and file system.
    pub fn from_env(flags: &Conn) -> anyhow::Result<Settings> {
        Settings::resolve(flags, |k| std::env::var(k).ok(), read_bootstrap)
    }

    pub fn subscription(&self) -> Result<&SubscriptionId, UsageError> {
        self.subscription
            .as_ref()
            .ok_or_else(|| UsageError::new("no subscription: pass --subscription GUID, or --bootstrap FILE (AJAR_BOOTSTRAP)"))
    }

    pub fn resource_group(&self) -> Result<&ResourceGroup, UsageError> {
        self.resource_group
            .as_ref()
            .ok_or_else(|| UsageError::new("no resource group: pass --resource-group NAME, or --bootstrap FILE (AJAR_BOOTSTRAP)"))
    }

    pub fn location(&self) -> Result<&Location, UsageError> {
        self.location.as_ref().ok_or_else(|| UsageError::new("no location: pass --location NAME, or --bootstrap FILE (AJAR_BOOTSTRAP)"))
    }

    /// A VM name or full resource ID → the ID.
    pub fn vm_id(&self, input: &str) -> Result<VmId, UsageError> {
        resolve_vm(input, self.subscription.as_ref(), self.resource_group.as_ref())
    }

    /// A policy name or full resource ID → the ID, in the default resource
    /// group and location.
    pub fn policy_id(&self, input: &str) -> Result<PolicyId, UsageError> {
        if input.starts_with('/') {
            return input.parse().map_err(|e| UsageError::new(format!("{e}")));
        }
        let name: PolicyName = input.parse().map_err(|e| UsageError::new(format!("{e}")))?;
        Ok(PolicyId {
            subscription: self.subscription()?.clone(),
            resource_group: self.resource_group()?.clone(),
            location: self.location()?.clone(),
            name,
        })
    }
}

/// A short name becomes `/subscriptions/{sub}/resourceGroups/{rg}/providers/
/// Microsoft.Compute/virtualMachines/{name}`; a full resource ID is used as is.
pub fn resolve_vm(input: &str, sub: Option<&SubscriptionId>, rg: Option<&ResourceGroup>) -> Result<VmId, UsageError> {
    let input = input.trim();
    if input.starts_with('/') {
        return input.parse().map_err(|e| UsageError::new(format!("{e}")));
    }
    let name: VmName = input.parse().map_err(|e| UsageError::new(format!("{e}; give a VM name such as web1 or a full resource ID")))?;
    let subscription = sub.cloned().ok_or_else(|| {
        UsageError::new(format!(
            "cannot resolve VM '{input}': no subscription; pass --subscription GUID, --bootstrap FILE, or a full resource ID"
        ))
    })?;
    let resource_group = rg.cloned().ok_or_else(|| {
        UsageError::new(format!(
            "cannot resolve VM '{input}': no resource group; pass --resource-group NAME, --bootstrap FILE, or a full resource ID"
        ))
    })?;
    Ok(VmId { subscription, resource_group, name })
}

/// A policy's ID from its parts.
pub fn policy_id_for(vm: &VmId, location: &Location, name: &str) -> Result<PolicyId, UsageError> {
    let name: PolicyName = name.parse().map_err(|e| UsageError::new(format!("{e}")))?;
    Ok(PolicyId { subscription: vm.subscription.clone(), resource_group: vm.resource_group.clone(), location: location.clone(), name })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
    const SUB2: &str = "11111111-2222-3333-4444-555555555555";

    fn check_vm(input: &str, sub: Option<&str>, rg: Option<&str>, expected: Result<&str, &str>) {
        let sub: Option<SubscriptionId> = sub.map(|s| s.parse().unwrap());
        let rg: Option<ResourceGroup> = rg.map(|s| s.parse().unwrap());
        match (resolve_vm(input, sub.as_ref(), rg.as_ref()), expected) {
            (Ok(id), Ok(shown)) => assert_eq!(id.to_string(), shown, "{input}"),
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn vm_names_resolve() {
        let full = format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/web1");
        check_vm("web1", Some(SUB), Some("rg1"), Ok(&full));
        check_vm(&full, None, None, Ok(&full));
        check_vm(&full, Some(SUB2), Some("other"), Ok(&full));
        check_vm("web1", None, Some("rg1"), Err("no subscription"));
        check_vm("web1", Some(SUB), None, Err("no resource group"));
        check_vm("web 1", Some(SUB), Some("rg1"), Err("' ' is not allowed"));
        check_vm("/subscriptions/x", Some(SUB), Some("rg1"), Err("ends before 'resourceGroups'"));
    }

    struct Case {
        flags: Conn,
        env: &'static [(&'static str, &'static str)],
        file: Option<BootstrapFile>,
    }

    fn resolve(case: &Case) -> anyhow::Result<Settings> {
        let env: HashMap<&str, &str> = case.env.iter().copied().collect();
        let file = case.file.clone();
        Settings::resolve(
            &case.flags,
            |k| env.get(k).map(|v| (*v).to_owned()),
            |p| {
                assert!(p.ends_with("bootstrap.json"), "{}", p.display());
                file.clone().ok_or_else(|| anyhow::anyhow!("no such file"))
            },
        )
    }

    fn boot() -> BootstrapFile {
        BootstrapFile {
            url: Some("https://file:8443".into()),
            ca: Some("ca.pem".into()),
            subscription_id: Some(SUB.into()),
            resource_group: Some("filerg".into()),
            location: Some("fileloc".into()),
            admin_token: Some("file-admin".into()),
            join_token: Some("file-join".into()),
        }
    }

    /// What a case resolves to: (server, token, ca, subscription, rg, location).
    type Expected<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    /// One case: its settings, or (part of) the error message.
    fn check(case: Case, expected: Result<Expected<'_>, &str>) {
        match (resolve(&case), expected) {
            (Ok(s), Ok((server, token, ca, sub, rg, loc))) => {
                assert_eq!(s.server, server);
                assert_eq!(s.token, token);
                assert_eq!(s.ca, PathBuf::from(ca));
                assert_eq!(s.subscription.as_ref().map(|x| x.to_string()).as_deref(), sub);
                assert_eq!(s.resource_group.as_ref().map(|x| x.to_string()).as_deref(), rg);
                assert_eq!(s.location.as_ref().map(|x| x.to_string()).as_deref(), loc);
            }
            (Err(e), Err(why)) => assert!(format!("{e:#}").contains(why), "{e:#}"),
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    fn flags() -> Conn {
        Conn {
            server: Some("https://flag:1".into()),
            token: Some("flag-token".into()),
            ca: Some("/flag/ca.pem".into()),
            bootstrap: None,
            subscription: Some(SUB2.parse().unwrap()),
            resource_group: Some("flagrg".parse().unwrap()),
            location: Some("flagloc".parse().unwrap()),
            ..Conn::default()
        }
    }

    const ENV_ALL: &[(&str, &str)] = &[
        ("AJAR_SERVER", "https://env:2"),
        ("AJAR_TOKEN", "env-token"),
        ("AJAR_CA", "/env/ca.pem"),
        ("AJAR_BOOTSTRAP", "/data/bootstrap.json"),
    ];

    #[test]
    fn flags_beat_env_beat_bootstrap() {
        // Flags win over everything.
        check(
            Case { flags: flags(), env: ENV_ALL, file: Some(boot()) },
            Ok(("https://flag:1", "flag-token", "/flag/ca.pem", Some(SUB2), Some("flagrg"), Some("flagloc"))),
        );
        // The environment wins over the file; defaults still come from the file.
        check(
            Case { flags: Conn::default(), env: ENV_ALL, file: Some(boot()) },
            Ok(("https://env:2", "env-token", "/env/ca.pem", Some(SUB), Some("filerg"), Some("fileloc"))),
        );
        // Only the file: its admin token, and its CA relative to the file.
        check(
            Case { flags: Conn::default(), env: &[("AJAR_BOOTSTRAP", "/data/bootstrap.json")], file: Some(boot()) },
            Ok(("https://file:8443", "file-admin", "/data/ca.pem", Some(SUB), Some("filerg"), Some("fileloc"))),
        );
        // --bootstrap beats AJAR_BOOTSTRAP, and settings mix per field.
        check(
            Case {
                flags: Conn { bootstrap: Some("/flag/bootstrap.json".into()), token: Some("t".into()), ..Conn::default() },
                env: &[("AJAR_BOOTSTRAP", "/elsewhere/nope.json"), ("AJAR_SERVER", "https://env:2")],
                file: Some(BootstrapFile { ca: Some("/abs/ca.pem".into()), ..boot() }),
            },
            Ok(("https://env:2", "t", "/abs/ca.pem", Some(SUB), Some("filerg"), Some("fileloc"))),
        );
        // An empty variable counts as unset.
        check(
            Case { flags: Conn::default(), env: &[("AJAR_SERVER", ""), ("AJAR_BOOTSTRAP", "/data/bootstrap.json")], file: Some(boot()) },
            Ok(("https://file:8443", "file-admin", "/data/ca.pem", Some(SUB), Some("filerg"), Some("fileloc"))),
        );
        // A file cut down to the server and its CA still gives those.
        check(
            Case {
                flags: Conn::default(),
                env: &[("AJAR_BOOTSTRAP", "/data/bootstrap.json"), ("AJAR_TOKEN", "env-token")],
                file: Some(BootstrapFile { url: Some("https://file:8443".into()), ca: Some("ca.pem".into()), ..BootstrapFile::default() }),
            },
            Ok(("https://file:8443", "env-token", "/data/ca.pem", None, None, None)),
        );
        // No defaults anywhere: still fine until a command needs one.
        check(
            Case { flags: Conn::default(), env: &ENV_ALL[..3], file: None },
            Ok(("https://env:2", "env-token", "/env/ca.pem", None, None, None)),
        );
    }

    #[test]
    fn says_what_to_set() {
        check(
            Case { flags: Conn::default(), env: &[], file: None },
            Err("missing server URL (--server or AJAR_SERVER), token (--token or AJAR_TOKEN), CA file"),
        );
        check(Case { flags: Conn::default(), env: &[("AJAR_SERVER", "https://x")], file: None }, Err("missing token"));
        check(Case { flags: Conn::default(), env: &[("AJAR_BOOTSTRAP", "/data/bootstrap.json")], file: None }, Err("no such file"));
        check(
            Case {
                flags: Conn::default(),
                env: &[("AJAR_BOOTSTRAP", "/data/bootstrap.json")],
                file: Some(BootstrapFile { subscription_id: Some("nope".into()), ..boot() }),
            },
            Err("the bootstrap file's subscription is invalid"),
        );
        let s = resolve(&Case { flags: Conn::default(), env: &ENV_ALL[..3], file: None }).unwrap();
        assert!(s.subscription().unwrap_err().to_string().contains("--subscription"));
        assert!(s.resource_group().unwrap_err().to_string().contains("--resource-group"));
        assert!(s.location().unwrap_err().to_string().contains("--location"));
    }
}
