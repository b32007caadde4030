//! Pure parsers for what users type: port specs, durations (`1h`, `PT1H`),
//! times (RFC 3339 or `7d` ago) and source addresses. Used as clap value
//! parsers, so a mistake is a usage error (exit 2) naming the flag.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use ajar_api::jit::PortRuleIn;
use ajar_api::wire_time;
use ajar_domain::policy::Protocol;
use ajar_domain::{AccessDuration, SourcePrefix};

/// Azure's default maximum request time for a JIT port: three hours.
pub fn default_max() -> AccessDuration {
    AccessDuration::from_seconds(3 * 3600)
}

const SPEC_SHAPE: &str = "write NUMBER[/PROTO][,from=PREFIX[;PREFIX...]][,max=DURATION], e.g. 22/tcp,from=10.0.0.0/8,max=PT1H";

/// A duration as users type it: ISO 8601 (`PT1H`, `P1D`) or shorthand
/// (`1h`, `30m`, `90s`, `2d`, `1h30m`). Zero is refused: no access is
/// granted for no time.
pub fn parse_duration(input: &str) -> Result<AccessDuration, String> {
    let s = input.trim();
    let d = if s.starts_with(['P', 'p']) { s.parse::<AccessDuration>().map_err(|e| e.to_string())? } else { parse_shorthand(s)? };
    if d.as_duration() <= time::Duration::ZERO {
        return Err(format!("'{input}' is zero; give a length such as 1h, 30m or PT1H"));
    }
    Ok(d)
}

fn parse_shorthand(s: &str) -> Result<AccessDuration, String> {
    let bad = |why: &str| format!("'{s}' is not a duration: {why}; use 1h, 30m, 90s, 2d, 1h30m or ISO 8601 such as PT1H");
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut last_rank = 0;
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let (rank, unit) = match ch.to_ascii_lowercase() {
            'd' => (1, 86_400),
            'h' => (2, 3600),
            'm' => (3, 60),
            's' => (4, 1),
            _ => return Err(bad(&format!("'{ch}' is not a unit (d, h, m, s)"))),
        };
        if num.is_empty() {
            return Err(bad(&format!("'{ch}' has no number before it")));
        }
        if rank <= last_rank {
            return Err(bad("units must appear once each, in the order d, h, m, s"));
        }
        last_rank = rank;
        let n: i64 = num.parse().map_err(|_| bad("the number is too large"))?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| bad("the number is too large"))?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(bad(&format!("'{num}' has no unit; write {num}m or {num}s")));
    }
    Ok(AccessDuration::from_seconds(total))
}

/// ISO 8601 for a duration typed in any accepted form (`1h` → `PT1H`).
pub fn to_iso(d: AccessDuration) -> String {
    d.to_string()
}

/// `NUMBER[/PROTO][,from=PREFIX[;PREFIX...]][,max=DURATION]`: one JIT port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub number: u16,
    pub protocol: Protocol,
    pub sources: Vec<SourcePrefix>,
    pub max: AccessDuration,
}

fn parse_port_number(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{s}' is not a port number from 1 to 65535")),
        Ok(n) => Ok(n),
    }
}

/// A port number for `ajar request --port`.
pub fn port_number(s: &str) -> Result<u16, String> {
    parse_port_number(s)
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let mut parts = input.split(',');
        let head = parts.next().unwrap_or_default().trim();
        if head.is_empty() {
            return Err(format!("the port spec '{input}' names no port; {SPEC_SHAPE}"));
        }
        let (number, protocol) = match head.split_once('/') {
            Some((n, p)) => (n, Some(p)),
            None => (head, None),
        };
        let number = parse_port_number(number)?;
        let protocol = match protocol.map(str::trim) {
            None => Protocol::Tcp,
            Some(p) if p.eq_ignore_ascii_case("any") => Protocol::Any,
            Some(p) => p.parse::<Protocol>().map_err(|e| format!("{e} (or 'any')"))?,
        };
        let mut sources = None;
        let mut max = None;
        for part in parts {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("'{part}' in port spec '{input}' is not key=value; {SPEC_SHAPE}"));
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "from" if sources.is_none() => {
                    let list = value
                        .split(';')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse::<SourcePrefix>().map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, _>>()?;
                    if list.is_empty() {
                        return Err(format!("'from=' in port spec '{input}' lists no prefix; use '*' for any source"));
                    }
                    sources = Some(list);
                }
                "max" if max.is_none() => max = Some(parse_duration(value)?),
                "from" | "max" => {
                    return Err(format!("'{}' is given twice in port spec '{input}'", key.trim()));
                }
                other => {
                    return Err(format!("'{other}' is not a port spec key (from, max); {SPEC_SHAPE}"));
                }
            }
        }
        Ok(PortSpec { number, protocol, sources: sources.unwrap_or_else(|| vec![SourcePrefix::Any]), max: max.unwrap_or_else(default_max) })
    }
}

impl PortSpec {
    /// The rule as a policy PUT (or enable) takes it: one source goes in
    /// `allowedSourceAddressPrefix`, several in `allowedSourceAddressPrefixes`.
    pub fn to_rule(&self) -> PortRuleIn {
        let (one, list) = match self.sources.as_slice() {
            [single] => (Some(single.to_string()), None),
            many => (None, Some(many.iter().map(ToString::to_string).collect())),
        };
        PortRuleIn {
            number: i64::from(self.number),
            protocol: self.protocol.as_str().to_owned(),
            allowed_source_address_prefix: one,
            allowed_source_address_prefixes: list,
            max_request_access_duration: to_iso(self.max),
        }
    }
}

/// A point in time: RFC 3339, or a length of time before now (`1h`, `7d`, `PT1H`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    At(OffsetDateTime),
    Ago(AccessDuration),
}

impl FromStr for TimeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(d) = parse_duration(s) {
            return Ok(TimeArg::Ago(d));
        }
        wire_time::parse(s.trim())
            .map(TimeArg::At)
            .map_err(|_| format!("'{s}' is neither an RFC 3339 time such as 2026-01-01T12:00:00Z nor a time ago such as 1h or 7d"))
    }
}

impl TimeArg {
    pub fn resolve(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            TimeArg::At(t) => t,
            TimeArg::Ago(d) => now - d.as_duration(),
        }
    }
}

/// An RFC 3339 time (for `--until`).
pub fn rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    wire_time::parse(s.trim())
}

/// Where access is asked from: the caller's own address as the server sees
/// it, or a given address or CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceArg {
    MyIp,
    Prefix(SourcePrefix),
}

impl FromStr for SourceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("my-ip") || t.eq_ignore_ascii_case("myip") {
            return Ok(SourceArg::MyIp);
        }
        t.parse::<SourcePrefix>().map(SourceArg::Prefix).map_err(|e| format!("{e} (or 'my-ip')"))
    }
}

impl fmt::Display for SourceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceArg::MyIp => f.write_str("my-ip"),
            SourceArg::Prefix(p) => write!(f, "{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn check_duration(input: &str, expected: Result<&str, &str>) {
        match (parse_duration(input), expected) {
            (Ok(d), Ok(iso)) => assert_eq!(to_iso(d), iso, "{input}"),
            (Err(e), Err(why)) => assert!(e.contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn durations() {
        check_duration("1h", Ok("PT1H"));
        check_duration("30m", Ok("PT30M"));
        check_duration("90s", Ok("PT1M30S"));
        check_duration("90m", Ok("PT1H30M"));
        check_duration("1h30m", Ok("PT1H30M"));
        check_duration("2d", Ok("P2D"));
        check_duration("1D2H", Ok("P1DT2H"));
        check_duration("PT1H", Ok("PT1H"));
        check_duration("pt90m", Ok("PT1H30M"));
        check_duration("P1D", Ok("P1D"));
        check_duration(" 5m ", Ok("PT5M"));
        check_duration("", Err("empty"));
        check_duration("90", Err("write 90m or 90s"));
        check_duration("1x", Err("not a unit"));
        check_duration("h", Err("no number"));
        check_duration("30m1h", Err("in the order"));
        check_duration("0m", Err("zero"));
        check_duration("PT0S", Err("zero"));
        check_duration("P1M", Err("years and months"));
        check_duration("99999999999999999999h", Err("too large"));
    }

    fn check_spec(input: &str, expected: Result<(u16, Protocol, &[&str], &str), &str>) {
        match (input.parse::<PortSpec>(), expected) {
            (Ok(spec), Ok((number, protocol, sources, max))) => {
                assert_eq!(spec.number, number, "{input}");
                assert_eq!(spec.protocol, protocol, "{input}");
                let got: Vec<String> = spec.sources.iter().map(ToString::to_string).collect();
                assert_eq!(got, sources, "{input}");
                assert_eq!(to_iso(spec.max), max, "{input}");
            }
            (Err(e), Err(why)) => assert!(e.contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn port_specs() {
        check_spec("22", Ok((22, Protocol::Tcp, &["*"], "PT3H")));
        check_spec("22/tcp,from=10.0.0.0/8,max=PT1H", Ok((22, Protocol::Tcp, &["10.0.0.0/8"], "PT1H")));
        check_spec("53/udp", Ok((53, Protocol::Udp, &["*"], "PT3H")));
        check_spec("3389/*,max=2h", Ok((3389, Protocol::Any, &["*"], "PT2H")));
        check_spec("3389/any", Ok((3389, Protocol::Any, &["*"], "PT3H")));
        check_spec("22,from=10.0.0.0/8;192.0.2.7", Ok((22, Protocol::Tcp, &["10.0.0.0/8", "192.0.2.7"], "PT3H")));
        check_spec("22, max=30m , from=*", Ok((22, Protocol::Tcp, &["*"], "PT30M")));
        check_spec("", Err("names no port"));
        check_spec("0", Err("from 1 to 65535"));
        check_spec("70000", Err("from 1 to 65535"));
        check_spec("ssh", Err("from 1 to 65535"));
        check_spec("22/icmp", Err("not a protocol"));
        check_spec("22,from=", Err("lists no prefix"));
        check_spec("22,from=10.0.0.1/8", Err("host bits"));
        check_spec("22,max=PT1Y", Err("not an ISO 8601"));
        check_spec("22,max=1h,max=2h", Err("twice"));
        check_spec("22,to=x", Err("not a port spec key"));
        check_spec("22,PT1H", Err("not key=value"));
    }

    #[test]
    fn port_spec_to_rule() {
        let one = "22,from=10.0.0.0/8".parse::<PortSpec>().unwrap().to_rule();
        assert_eq!(serde_json::to_value(&one).unwrap()["allowedSourceAddressPrefix"], "10.0.0.0/8");
        assert_eq!(serde_json::to_value(&one).unwrap()["maxRequestAccessDuration"], "PT3H");
        let two = "22/udp,from=10.0.0.0/8;*".parse::<PortSpec>().unwrap().to_rule();
        let v = serde_json::to_value(&two).unwrap();
        assert_eq!(v["allowedSourceAddressPrefixes"], serde_json::json!(["10.0.0.0/8", "*"]));
        assert_eq!(v["protocol"], "UDP");
        assert!(v.get("allowedSourceAddressPrefix").is_none());
    }

    #[test]
    fn times() {
        let now = datetime!(2026-01-08 12:00 UTC);
        let check = |input: &str, expected: Result<OffsetDateTime, &str>| match (input.parse::<TimeArg>(), expected) {
            (Ok(t), Ok(want)) => assert_eq!(t.resolve(now), want, "{input}"),
            (Err(e), Err(why)) => assert!(e.contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        };
        check("7d", Ok(datetime!(2026-01-01 12:00 UTC)));
        check("1h", Ok(datetime!(2026-01-08 11:00 UTC)));
        check("PT30M", Ok(datetime!(2026-01-08 11:30 UTC)));
        check("2026-01-01T00:00:00Z", Ok(datetime!(2026-01-01 00:00 UTC)));
        check("2026-01-01T02:00:00+02:00", Ok(datetime!(2026-01-01 00:00 UTC)));
        check("yesterday", Err("neither an RFC 3339 time"));
    }

    #[test]
    fn sources() {
        let check = |input: &str, expected: Result<&str, &str>| match (input.parse::<SourceArg>(), expected) {
            (Ok(s), Ok(shown)) => assert_eq!(s.to_string(), shown, "{input}"),
            (Err(e), Err(why)) => assert!(e.contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        };
        check("my-ip", Ok("my-ip"));
        check("MY-IP", Ok("my-ip"));
        check("203.0.113.7", Ok("203.0.113.7"));
        check("10.0.0.0/8", Ok("10.0.0.0/8"));
        check("*", Ok("*"));
        check("Internet", Err("my-ip"));
    }
}
