//! `Microsoft.Security/locations/jitNetworkAccessPolicies`: the ARM JSON shapes
//! and their conversion to and from the domain.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use ajar_domain::ids::arm_key;
use ajar_domain::initiate::{AccessRequest, EndSpec, Grant, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::plans::Precondition;
use ajar_domain::policy::{Policy, PortRule, Protocol, VmPolicy};
use ajar_domain::{AccessDuration, PolicyId, SourcePrefix, Sources, VmId};

use crate::{ApiError, wire_time};

pub const RESOURCE_TYPE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies";

// ------------------------------------------------------------------ output

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessPolicy {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
    pub location: String,
    /// ajar's extension (ARM's `etag`): the version, as the `ETag` header gives it, for `If-Match`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    pub properties: JitNetworkAccessPolicyProperties,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessPolicyProperties {
    pub virtual_machines: Vec<JitNetworkAccessPolicyVirtualMachine>,
    #[serde(default)]
    pub requests: Vec<JitNetworkAccessRequest>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provisioning_state: Option<String>,
    /// ajar's extension (not in Azure's schema): shown only when on, so
    /// Azure-shaped responses stay Azure's.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub cut_connections_on_revoke: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessPolicyVirtualMachine {
    pub id: String,
    pub ports: Vec<JitNetworkAccessPortRule>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub public_ip_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessPortRule {
    pub number: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub allowed_source_address_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
    pub max_request_access_duration: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessRequest {
    pub virtual_machines: Vec<JitNetworkAccessRequestVirtualMachine>,
    pub start_time_utc: String,
    pub requestor: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub justification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessRequestVirtualMachine {
    pub id: String,
    pub ports: Vec<JitNetworkAccessRequestPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessRequestPort {
    pub number: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub allowed_source_address_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
    pub end_time_utc: String,
    pub status: String,
    pub status_reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mapped_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitNetworkAccessPoliciesList {
    pub value: Vec<JitNetworkAccessPolicy>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_link: Option<String>,
}

/// Splits sources back into the field they were written in.
fn sources_out(sources: &Sources) -> (Option<String>, Option<Vec<String>>) {
    match sources {
        Sources::One(p) => (Some(p.to_string()), None),
        Sources::List(list) => (None, Some(list.iter().map(ToString::to_string).collect())),
    }
}

pub fn port_rule_out(rule: &PortRule) -> JitNetworkAccessPortRule {
    let (one, list) = sources_out(&rule.sources);
    JitNetworkAccessPortRule {
        number: rule.number,
        protocol: rule.protocol.as_str().to_owned(),
        allowed_source_address_prefix: one,
        allowed_source_address_prefixes: list,
        max_request_access_duration: rule.max_duration.to_string(),
    }
}

fn grant_out(grant: &Grant, now: OffsetDateTime) -> JitNetworkAccessRequestPort {
    let (one, list) = sources_out(&grant.sources);
    let (status, reason) = grant.status_at(now);
    JitNetworkAccessRequestPort {
        number: grant.number,
        allowed_source_address_prefix: one,
        allowed_source_address_prefixes: list,
        end_time_utc: wire_time::format(grant.end),
        status: status.as_str().to_owned(),
        status_reason: reason.as_str().to_owned(),
        mapped_port: grant.mapped_port,
    }
}

/// A request as `requests[]` and the initiate response show it, with each
/// port's status as of `now`.
pub fn request_out(request: &AccessRequest, now: OffsetDateTime) -> JitNetworkAccessRequest {
    JitNetworkAccessRequest {
        virtual_machines: request
            .vms
            .iter()
            .map(|vm| JitNetworkAccessRequestVirtualMachine {
                id: vm.vm.to_string(),
                ports: vm.grants.iter().map(|g| grant_out(g, now)).collect(),
            })
            .collect(),
        start_time_utc: wire_time::format(request.start),
        requestor: request.requestor.clone(),
        justification: request.justification.clone(),
    }
}

/// An entity tag as HTTP writes it (`"…"`), in the `ETag` header and in a policy's `etag`.
pub fn etag_out(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// A policy version (`etag`, as stored) with its history.
pub fn policy_out(policy: &Policy, etag: &str, requests: &[AccessRequest], now: OffsetDateTime) -> JitNetworkAccessPolicy {
    JitNetworkAccessPolicy {
        id: policy.id.to_string(),
        name: policy.id.name.to_string(),
        resource_type: RESOURCE_TYPE.to_owned(),
        kind: policy.kind.clone(),
        location: policy.id.location.to_string(),
        etag: Some(etag_out(etag)),
        properties: JitNetworkAccessPolicyProperties {
            virtual_machines: policy
                .vms
                .iter()
                .map(|vm| JitNetworkAccessPolicyVirtualMachine {
                    id: vm.vm.to_string(),
                    ports: vm.ports.iter().map(port_rule_out).collect(),
                    public_ip_address: vm.public_ip.clone(),
                })
                .collect(),
            requests: requests.iter().map(|r| request_out(r, now)).collect(),
            provisioning_state: Some("Succeeded".to_owned()),
            cut_connections_on_revoke: policy.cut_connections_on_revoke,
        },
    }
}

// ------------------------------------------------------------------ input

/// A PUT body, as the server reads it and the client sends it. Read-only fields are accepted (Azure's
/// own example sends them back) and must agree with the URL; `requests` is history the server keeps,
/// so what a client sends there is ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// What a GET answered; ignored (a conditional write says so in `If-Match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub properties: PolicyPropertiesIn,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPropertiesIn {
    pub virtual_machines: Vec<PolicyVmIn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// ajar's extension: an early revoke also cuts the grant's established
    /// connections. Omitted means off, as on Azure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_connections_on_revoke: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyVmIn {
    pub id: String,
    pub ports: Vec<PortRuleIn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRuleIn {
    pub number: i64,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
    pub max_request_access_duration: String,
}

impl From<&JitNetworkAccessPortRule> for PortRuleIn {
    fn from(rule: &JitNetworkAccessPortRule) -> Self {
        PortRuleIn {
            number: i64::from(rule.number),
            protocol: rule.protocol.clone(),
            allowed_source_address_prefix: rule.allowed_source_address_prefix.clone(),
            allowed_source_address_prefixes: rule.allowed_source_address_prefixes.clone(),
            max_request_access_duration: rule.max_request_access_duration.clone(),
        }
    }
}

impl From<&JitNetworkAccessPolicyVirtualMachine> for PolicyVmIn {
    fn from(vm: &JitNetworkAccessPolicyVirtualMachine) -> Self {
        PolicyVmIn {
            id: vm.id.clone(),
            ports: vm.ports.iter().map(PortRuleIn::from).collect(),
            public_ip_address: vm.public_ip_address.clone(),
        }
    }
}

/// The PUT body that writes a policy as read back as it is: its `kind`, machines and
/// `cutConnectionsOnRevoke` (Azure's PUT replaces the whole policy). The read-only fields are left
/// out; whether the policy is still as read is for `If-Match` to say.
impl From<&JitNetworkAccessPolicy> for PolicyIn {
    fn from(policy: &JitNetworkAccessPolicy) -> Self {
        PolicyIn {
            kind: policy.kind.clone(),
            properties: PolicyPropertiesIn {
                virtual_machines: policy.properties.virtual_machines.iter().map(PolicyVmIn::from).collect(),
                cut_connections_on_revoke: policy.properties.cut_connections_on_revoke,
                ..PolicyPropertiesIn::default()
            },
            ..PolicyIn::default()
        }
    }
}

fn invalid(code: &str, target: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, target, message)
}

fn port_number(code: &str, target: &str, n: i64) -> Result<u16, ApiError> {
    u16::try_from(n).map_err(|_| invalid(code, target, format!("port number {n} is outside 0 to 65535")))
}

/// Exactly one of the two source fields, each entry `*`, an address or a CIDR.
/// `None` when neither is given.
fn sources_in(code: &str, at: &str, one: Option<&str>, list: Option<&[String]>) -> Result<Option<Sources>, ApiError> {
    match (one, list) {
        (Some(_), Some(_)) => Err(invalid(
            code,
            &format!("{at}.allowedSourceAddressPrefixes"),
            "give either allowedSourceAddressPrefix or allowedSourceAddressPrefixes, not both",
        )),
        (Some(p), None) => {
            let prefix: SourcePrefix = p.parse().map_err(|e| invalid(code, &format!("{at}.allowedSourceAddressPrefix"), format!("{e}")))?;
            Ok(Some(Sources::One(prefix)))
        }
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(invalid(
                    code,
                    &format!("{at}.allowedSourceAddressPrefixes"),
                    "the list is empty; give at least one prefix, or '*'",
                ));
            }
            let prefixes = list
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    p.parse::<SourcePrefix>().map_err(|e| invalid(code, &format!("{at}.allowedSourceAddressPrefixes[{k}]"), format!("{e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Sources::List(prefixes)))
        }
        (None, None) => Ok(None),
    }
}

pub fn port_rule_in(port: &PortRuleIn, at: &str) -> Result<PortRule, ApiError> {
    const CODE: &str = "InvalidPolicy";
    let number = port_number(CODE, &format!("{at}.number"), port.number)?;
    let protocol: Protocol = port.protocol.parse().map_err(|e: String| invalid(CODE, &format!("{at}.protocol"), e))?;
    let sources = sources_in(CODE, at, port.allowed_source_address_prefix.as_deref(), port.allowed_source_address_prefixes.as_deref())?
        .ok_or_else(|| {
            invalid(
                CODE,
                &format!("{at}.allowedSourceAddressPrefix"),
                "say which sources may ask: allowedSourceAddressPrefix ('*' for any) or allowedSourceAddressPrefixes",
            )
        })?;
    let max_duration: AccessDuration =
        port.max_request_access_duration.parse().map_err(|e| invalid(CODE, &format!("{at}.maxRequestAccessDuration"), format!("{e}")))?;
    Ok(PortRule { number, protocol, sources, max_duration })
}

/// Turns a PUT body into a policy for the resource at `id`.
pub fn policy_in(id: &PolicyId, body: &[u8]) -> Result<Policy, ApiError> {
    const CODE: &str = "InvalidPolicy";
    let input: PolicyIn = crate::parse_body(body)?;
    // ARM names compare ignoring case in any letters, as the URL's do.
    if let Some(name) = &input.name
        && arm_key(name) != id.name.key()
    {
        return Err(invalid(CODE, "name", format!("the body names policy '{name}' but the URL names '{}'", id.name)));
    }
    if let Some(location) = &input.location
        && arm_key(location) != id.location.key()
    {
        return Err(invalid(CODE, "location", format!("the body says location '{location}' but the URL says '{}'", id.location)));
    }
    if let Some(body_id) = &input.id
        && arm_key(body_id) != id.key()
    {
        return Err(invalid(CODE, "id", format!("the body's id '{body_id}' is not the URL's resource '{id}'")));
    }
    if let Some(t) = &input.resource_type
        && !t.eq_ignore_ascii_case(RESOURCE_TYPE)
    {
        return Err(invalid(CODE, "type", format!("type '{t}' is not {RESOURCE_TYPE}")));
    }
    let mut vms = Vec::with_capacity(input.properties.virtual_machines.len());
    for (i, vm) in input.properties.virtual_machines.iter().enumerate() {
        let at = format!("properties.virtualMachines[{i}]");
        let vm_id: VmId = vm.id.parse().map_err(|e| invalid(CODE, &format!("{at}.id"), format!("{e}")))?;
        let ports =
            vm.ports.iter().enumerate().map(|(j, p)| port_rule_in(p, &format!("{at}.ports[{j}]"))).collect::<Result<Vec<_>, _>>()?;
        vms.push(VmPolicy { vm: vm_id, ports, public_ip: vm.public_ip_address.clone() });
    }
    Ok(Policy { id: id.clone(), kind: input.kind, vms, cut_connections_on_revoke: input.properties.cut_connections_on_revoke })
}

/// An entity tag without the quotes HTTP writes around it (`"…"` → `…`), as the store keeps it.
pub fn etag_in(tag: &str) -> &str {
    tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag)
}

/// The precondition of a conditional write, from its `If-Match` (`*`, or entity tags separated by
/// commas) or `If-None-Match: *` header. A weak tag (`W/"…"`) never matches: writes compare strongly.
pub fn precondition_in(if_match: Option<&str>, if_none_match: Option<&str>) -> Result<Option<Precondition>, ApiError> {
    const CODE: &str = "InvalidRequestContent";
    match (if_match.map(str::trim), if_none_match.map(str::trim)) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(invalid(CODE, "If-None-Match", "give If-Match or If-None-Match, not both")),
        (None, Some("*")) => Ok(Some(Precondition::Absent)),
        (None, Some(_)) => Err(invalid(CODE, "If-None-Match", "only If-None-Match: * (create, do not replace) is supported on a write")),
        (Some("*"), None) => Ok(Some(Precondition::Exists)),
        (Some(list), None) => {
            let tags: Vec<String> = list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| etag_in(t).to_owned()).collect();
            if tags.is_empty() {
                return Err(invalid(CODE, "If-Match", "If-Match names no entity tag; give the policy's etag (from GET), or '*'"));
            }
            Ok(Some(Precondition::OneOf(tags)))
        }
    }
}

/// The header that asks for `precondition` on a write, with its value: the reverse of [`precondition_in`].
pub fn precondition_out(precondition: &Precondition) -> (&'static str, String) {
    match precondition {
        Precondition::Exists => ("If-Match", "*".to_owned()),
        Precondition::OneOf(tags) => ("If-Match", tags.iter().map(|t| etag_out(t)).collect::<Vec<_>>().join(", ")),
        Precondition::Absent => ("If-None-Match", "*".to_owned()),
    }
}

/// The precondition that a policy is still as it was read (`None`: it did not exist), for writing
/// back a change made to it without losing one made meanwhile.
pub fn unchanged_since(read: Option<&JitNetworkAccessPolicy>) -> Precondition {
    match read {
        Some(policy) => match &policy.etag {
            Some(etag) => Precondition::OneOf(vec![etag_in(etag).to_owned()]),
            // A server that names no version: it must at least still exist.
            None => Precondition::Exists,
        },
        None => Precondition::Absent,
    }
}

/// An initiate body, as the server reads it and the client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiateIn {
    pub virtual_machines: Vec<InitiateVmIn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiateVmIn {
    pub id: String,
    pub ports: Vec<InitiatePortIn>,
}

/// One port to open: exactly one of `duration` (ISO 8601) and `end_time_utc`. No source means the
/// caller's own address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiatePortIn {
    pub number: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
}

/// Turns an initiate body into a draft request. The service (unlike the spec)
/// takes `duration` in place of `endTimeUtc`, exactly one of them, and a
/// source list as well as a single source.
pub fn initiate_in(body: &[u8]) -> Result<InitiateDraft, ApiError> {
    const CODE: &str = "InvalidInitiateInput";
    let input: InitiateIn = crate::parse_body(body).map_err(|mut e| {
        e.body.code = CODE.to_owned();
        e
    })?;
    let mut vms = Vec::with_capacity(input.virtual_machines.len());
    for (i, vm) in input.virtual_machines.iter().enumerate() {
        let at = format!("virtualMachines[{i}]");
        let vm_id: VmId = vm.id.parse().map_err(|e| invalid(CODE, &format!("{at}.id"), format!("{e}")))?;
        let mut ports = Vec::with_capacity(vm.ports.len());
        for (j, p) in vm.ports.iter().enumerate() {
            let at = format!("{at}.ports[{j}]");
            let number = port_number(CODE, &format!("{at}.number"), p.number)?;
            let end = match (&p.end_time_utc, &p.duration) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(invalid(
                        CODE,
                        &format!("{at}.endTimeUtc"),
                        "Only one of fields 'EndTimeUtc' and 'Duration' can be set: give exactly one",
                    ));
                }
                (Some(t), None) => EndSpec::At(wire_time::parse(t).map_err(|e| invalid(CODE, &format!("{at}.endTimeUtc"), e))?),
                (None, Some(d)) => EndSpec::For(d.parse().map_err(|e| invalid(CODE, &format!("{at}.duration"), format!("{e}")))?),
            };
            let sources = sources_in(CODE, &at, p.allowed_source_address_prefix.as_deref(), p.allowed_source_address_prefixes.as_deref())?;
            ports.push(PortAsk { number, end, sources });
        }
        vms.push(VmAsk { vm: vm_id, ports });
    }
    Ok(InitiateDraft { vms, justification: input.justification })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/rg1/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies/default";
    const VM: &str =
        "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/web1";

    /// What the client sends is what the server reads: a policy as read, written back, is the same
    /// policy; an initiate body and a precondition read back as they were made.
    #[test]
    fn bodies_the_client_sends_read_back_as_made() {
        let id: PolicyId = POLICY.parse().unwrap();
        let body = serde_json::json!({"kind": "Basic", "properties": {"virtualMachines": [{"id": VM, "ports": [
            {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"},
            {"number": 3389, "protocol": "*", "allowedSourceAddressPrefixes": ["10.0.0.0/8", "192.0.2.7"], "maxRequestAccessDuration": "PT1H"}
        ], "publicIpAddress": "198.51.100.4"}], "cutConnectionsOnRevoke": true}});
        let policy = policy_in(&id, body.to_string().as_bytes()).unwrap();
        let read = policy_out(&policy, "v1", &[], OffsetDateTime::UNIX_EPOCH);
        let written = serde_json::to_vec(&PolicyIn::from(&read)).unwrap();
        assert_eq!(policy_in(&id, &written).unwrap(), policy);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&written).unwrap(), body);

        let initiate = InitiateIn {
            virtual_machines: vec![InitiateVmIn {
                id: VM.to_owned(),
                ports: vec![InitiatePortIn {
                    number: 22,
                    end_time_utc: None,
                    duration: Some("PT30M".to_owned()),
                    allowed_source_address_prefix: Some("10.1.2.3".to_owned()),
                    allowed_source_address_prefixes: None,
                }],
            }],
            justification: Some("deploy".to_owned()),
        };
        let draft = initiate_in(&serde_json::to_vec(&initiate).unwrap()).unwrap();
        assert_eq!(draft.justification.as_deref(), Some("deploy"));
        assert_eq!(draft.vms[0].ports[0].number, 22);
        assert_eq!(draft.vms[0].ports[0].end, EndSpec::For("PT30M".parse().unwrap()));

        for p in [Precondition::Exists, Precondition::Absent, Precondition::OneOf(vec!["a".to_owned(), "b".to_owned()])] {
            let (name, value) = precondition_out(&p);
            let back = match name {
                "If-Match" => precondition_in(Some(&value), None),
                _ => precondition_in(None, Some(&value)),
            };
            assert_eq!(back.unwrap(), Some(p));
        }
        assert_eq!(unchanged_since(Some(&read)), Precondition::OneOf(vec!["v1".to_owned()]));
        assert_eq!(unchanged_since(None), Precondition::Absent);
    }
}
