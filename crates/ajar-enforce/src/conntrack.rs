//! Cutting the established connections of a grant revoked early: which tracked flows to cut (pure), and
//! cutting them with the `conntrack` tool (I/O).
//!
//! Removing a flow from the connection tracker is not enough on its own: the next packet the local service
//! sends would track the flow again in the reverse direction. The ruleset's first rule drops packets to a
//! protected port in the reply direction, so a cut flow stays cut (see [`crate::ruleset`]).
//!
//! On a gateway a cut names the MAPPED port (`Cut::port` = `Mapping::mapped_port`): a translated flow's
//! original direction is client → public address : mapped port (the reply direction carries the machine's
//! address and port), and that is what is listed and deleted. The mapping must be gone first (revoked), or
//! the client's next packet is simply translated again as a new connection. After the cut, the machine's
//! next packet is tracked as a new flow the machine started from its served port, which the gateway's
//! forward chain drops, as the client's packets to the machine (see the gateway section of
//! [`crate::ruleset`]).

use std::ffi::OsString;
use std::net::IpAddr;

use crate::command::Tool;
use crate::desired::{L4, Proto, Source};
use crate::error::EnforceError;

/// One tracked flow, in its original direction (the client's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub l4: L4,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// The flows to cut: to `port` over `proto`, from inside `sources`, except those still allowed by a live
/// grant (`keep`), whose connections stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub proto: Proto,
    pub port: u16,
    pub sources: Vec<Source>,
    pub keep: Vec<(Proto, Source)>,
}

fn source_contains(source: &Source, addr: IpAddr) -> bool {
    match source {
        Source::Any => true,
        Source::Net(net) => net.contains(&addr),
    }
}

impl Cut {
    pub fn selects(&self, flow: &Flow) -> bool {
        flow.dport == self.port
            && self.proto.l4s().contains(&flow.l4)
            && self.sources.iter().any(|s| source_contains(s, flow.src))
            && !self.keep.iter().any(|(proto, s)| proto.l4s().contains(&flow.l4) && source_contains(s, flow.src))
    }
}

const CLOSED_TCP_STATES: [&str; 3] = ["TIME_WAIT", "CLOSE", "LAST_ACK"];

/// Parses `conntrack -L` output: the first `src=`, `dst=`, `sport=`, `dport=` of a line are its original
/// direction. Lines of other protocols or another shape are skipped.
pub fn parse_flows(text: &str) -> Vec<Flow> {
    text.lines().filter_map(parse_flow).collect()
}

fn parse_flow(line: &str) -> Option<Flow> {
    let mut words = line.split_whitespace();
    let l4 = L4::from_nft_name(words.next()?)?;
    // A TCP line names its state after the protocol number and the timeout; closed connections are
    // nothing to cut.
    if l4 == L4::Tcp && line.split_whitespace().nth(3).is_some_and(|state| CLOSED_TCP_STATES.contains(&state)) {
        return None;
    }
    let (mut src, mut dst, mut sport, mut dport) = (None, None, None, None);
    for word in words {
        let Some((key, value)) = word.split_once('=') else { continue };
        match key {
            "src" if src.is_none() => src = value.parse().ok(),
            "dst" if dst.is_none() => dst = value.parse().ok(),
            "sport" if sport.is_none() => sport = value.parse().ok(),
            "dport" if dport.is_none() => dport = value.parse().ok(),
            _ => {}
        }
    }
    Some(Flow { l4, src: src?, dst: dst?, sport: sport?, dport: dport? })
}

/// The connection tracker through the `conntrack` command line.
#[derive(Debug, Clone)]
pub struct Conntrack {
    conntrack: Tool,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self::new()
    }
}

impl Conntrack {
    /// `conntrack` from `PATH`.
    pub fn new() -> Self {
        Conntrack { conntrack: Tool::new("conntrack", Vec::new()) }
    }

    /// conntrack run as `program prefix_args… <arguments>`, as [`crate::NftFirewall::with_command`].
    pub fn with_command<I, S>(program: impl Into<OsString>, prefix_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Conntrack { conntrack: Tool::new(program, prefix_args.into_iter().map(Into::into).collect()) }
    }

    /// Removes the flows `cut` selects; returns how many were removed. Flows that end on their own meanwhile
    /// are not counted.
    pub fn cut(&self, cut: &Cut) -> Result<u64, EnforceError> {
        let port = cut.port.to_string();
        let mut removed = 0;
        for family in ["ipv4", "ipv6"] {
            for l4 in cut.proto.l4s() {
                let listed = self.conntrack.run(
                    "listing tracked connections",
                    &["-L", "-f", family, "-p", l4.nft_name(), "--orig-port-dst", &port],
                    None,
                )?;
                for flow in parse_flows(&listed).iter().filter(|f| cut.selects(f)) {
                    removed += self.delete(family, flow)?;
                }
            }
        }
        Ok(removed)
    }

    fn delete(&self, family: &str, flow: &Flow) -> Result<u64, EnforceError> {
        let (src, dst, sport, dport) = (flow.src.to_string(), flow.dst.to_string(), flow.sport.to_string(), flow.dport.to_string());
        let args = [
            "-D",
            "-f",
            family,
            "-p",
            flow.l4.nft_name(),
            "--orig-src",
            &src,
            "--orig-dst",
            &dst,
            "--orig-port-src",
            &sport,
            "--orig-port-dst",
            &dport,
        ];
        match self.conntrack.run("cutting a tracked connection", &args, None) {
            Ok(_) => Ok(1),
            // conntrack exits 1 when nothing matched: the flow ended by itself.
            Err(EnforceError::Failed { stderr, .. }) if stderr.contains("0 flow entries") => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
tcp      6 431999 ESTABLISHED src=10.9.0.2 dst=10.9.0.1 sport=46694 dport=22 src=10.9.0.1 dst=10.9.0.2 sport=22 dport=46694 [ASSURED] mark=0 use=1
tcp      6 118 TIME_WAIT src=10.9.0.2 dst=10.9.0.1 sport=46690 dport=22 src=10.9.0.1 dst=10.9.0.2 sport=22 dport=46690 [ASSURED] mark=0 use=1
udp      17 29 src=fd00::2 dst=fd00::1 sport=5000 dport=22 [UNREPLIED] src=fd00::1 dst=fd00::2 sport=22 dport=5000 mark=0 use=1
icmp     1 29 src=10.9.0.2 dst=10.9.0.1 type=8 code=0 id=1 src=10.9.0.1 dst=10.9.0.2 type=0 code=0 id=1 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.
";

    fn flow(l4: L4, src: &str, dport: u16) -> Flow {
        Flow { l4, src: src.parse().unwrap(), dst: "10.9.0.1".parse().unwrap(), sport: 40000, dport }
    }

    fn net(s: &str) -> Source {
        Source::Net(s.parse().unwrap())
    }

    #[test]
    fn listing_gives_the_original_direction_of_tcp_and_udp_flows() {
        let flows = parse_flows(LISTING);
        assert_eq!(flows.len(), 2);
        assert_eq!(
            flows[0],
            Flow { l4: L4::Tcp, src: "10.9.0.2".parse().unwrap(), dst: "10.9.0.1".parse().unwrap(), sport: 46694, dport: 22 }
        );
        assert_eq!((flows[1].l4, flows[1].src.to_string(), flows[1].dport), (L4::Udp, "fd00::2".into(), 22));
    }

    #[test]
    fn a_gateway_cut_selects_the_mapped_port_of_the_original_direction() {
        let line = "tcp      6 431999 ESTABLISHED src=10.78.0.2 dst=10.78.0.1 sport=51777 dport=50022 \
                    src=10.78.1.2 dst=10.78.0.2 sport=22 dport=51777 [ASSURED] mark=0 use=1";
        let flows = parse_flows(line);
        assert_eq!(flows.len(), 1);
        assert_eq!((flows[0].dst.to_string(), flows[0].dport), ("10.78.0.1".into(), 50022));
        let cut = |port| Cut { proto: Proto::Tcp, port, sources: vec![net("10.78.0.2/32")], keep: vec![] };
        assert!(cut(50022).selects(&flows[0]));
        assert!(!cut(22).selects(&flows[0]), "the machine's port is the reply direction's");
    }

    #[test]
    fn a_cut_selects_its_sources_port_and_protocol_but_keeps_live_grants() {
        let cut = Cut { proto: Proto::Tcp, port: 22, sources: vec![net("10.9.0.0/24")], keep: vec![(Proto::Both, net("10.9.0.7/32"))] };
        let table = [
            (flow(L4::Tcp, "10.9.0.2", 22), true),
            (flow(L4::Tcp, "10.9.0.7", 22), false),   // still granted
            (flow(L4::Udp, "10.9.0.2", 22), false),   // other protocol
            (flow(L4::Tcp, "10.9.0.2", 3389), false), // other port
            (flow(L4::Tcp, "10.8.0.2", 22), false),   // outside the grant's sources
        ];
        for (f, expected) in table {
            assert_eq!(cut.selects(&f), expected, "{f:?}");
        }
        let any = Cut { proto: Proto::Both, port: 22, sources: vec![Source::Any], keep: vec![(Proto::Udp, Source::Any)] };
        assert!(any.selects(&flow(L4::Tcp, "fd00::9", 22)));
        assert!(!any.selects(&flow(L4::Udp, "fd00::9", 22)));
    }
}
