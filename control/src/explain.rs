//! `rampart explain`: reads a packet description the way an operator writes it,
//! decides it with the reference evaluator and renders the reasons.
//!
//! Packet syntax (words may be given separately or as one quoted string):
//!
//! ```text
//! <proto> <src>[:<port>] -> <dst>[:<port>] [type <t> [code <c>]]
//! tcp 198.51.100.7:40000 -> 198.18.1.10:443
//! tcp [2001:db8::7]:40000 -> [2001:db8:1::10]:443
//! icmp 198.51.100.7 -> 198.18.1.10 type 8 code 0
//! ```
//!
//! `to` may replace `->` (which a shell must see quoted, since `>` redirects).
//! tcp, udp and sctp need both ports; icmp and icmpv6 need a type (the code
//! defaults to 0); other protocols (a number) take neither.
//!
//! The answer is what the appliance does with such a packet as the first of
//! its flow (a TCP packet is taken to be a SYN): what the pipeline settles
//! before the rules (neighbour discovery, spec section 5) is said so, and
//! which packets open a connection follows spec section 4. This module
//! decides that from the packet description alone and shares no code with
//! the pipeline, so that a test can hold one against the other.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::model::eval::{self, Check, Decision, Packet, Verdict};
use crate::model::{proto, Direction, Family, Model, Protocol};
use crate::settings::Settings;

/// Parses the words of a packet description. The error says what is wrong and
/// how to write it.
pub fn parse_packet(words: &[String], vlan: Option<u16>) -> Result<Packet, String> {
    let text = words.join(" ").replace("->", " -> ");
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let usage = "write <proto> <src>[:<port>] -> <dst>[:<port>] [type <t> code <c>], \
                 e.g. tcp 198.51.100.7:40000 -> 198.18.1.10:443";
    if tokens.len() < 4 {
        return Err(format!("incomplete packet {text:?}; {usage}"));
    }
    let protocol = match Protocol::parse_name(tokens[0]) {
        Ok(Protocol::Ip(p)) => p,
        Ok(Protocol::All) => return Err(format!("a packet has one protocol, not {:?}", tokens[0])),
        Err(e) => return Err(e),
    };
    if tokens[2] != "->" && tokens[2] != "to" {
        return Err(format!(
            "expected -> between the source and the destination, found {:?}; {usage}",
            tokens[2]
        ));
    }
    let (src, src_port) = parse_endpoint(tokens[1])?;
    let (dst, dst_port) = parse_endpoint(tokens[3])?;
    if Family::of(src) != Family::of(dst) {
        return Err(format!(
            "source {src} and destination {dst} are of different IP versions"
        ));
    }

    let mut icmp_type = None;
    let mut icmp_code = None;
    let mut rest = tokens[4..].iter();
    while let Some(word) = rest.next() {
        let slot = match *word {
            "type" => &mut icmp_type,
            "code" => &mut icmp_code,
            other => {
                return Err(format!(
                    "unexpected {other:?} after the destination; only type and code may follow"
                ))
            }
        };
        let value = rest
            .next()
            .ok_or_else(|| format!("{word} needs a number 0-255"))?;
        let n: u8 = value
            .parse()
            .map_err(|_| format!("{word} {value:?} is not a number 0-255"))?;
        *slot = Some(n);
    }

    let has_ports = Protocol::Ip(protocol).has_ports();
    let is_icmp = Protocol::Ip(protocol).is_icmp();
    let name = Protocol::Ip(protocol);
    if has_ports {
        let (Some(sp), Some(dp)) = (src_port, dst_port) else {
            return Err(format!(
                "{name} needs a source and a destination port, e.g. {name} 198.51.100.7:40000 -> 198.18.1.10:443"
            ));
        };
        if sp == 0 || dp == 0 {
            return Err("port 0 is not a valid port".to_owned());
        }
    } else if src_port.is_some() || dst_port.is_some() {
        return Err(format!("{name} has no ports; write the addresses without :port"));
    }
    if is_icmp {
        if icmp_type.is_none() {
            return Err(format!(
                "{name} needs a type, e.g. {name} 198.51.100.7 -> 198.18.1.10 type 8 code 0"
            ));
        }
        let family = Family::of(src);
        let expected = if protocol == proto::ICMP {
            Family::V4
        } else {
            Family::V6
        };
        if family != expected {
            return Err(format!(
                "{name} is for {expected} but the addresses are {family}; use {}",
                if expected == Family::V4 { "icmpv6" } else { "icmp" }
            ));
        }
    } else if icmp_type.is_some() || icmp_code.is_some() {
        return Err(format!("{name} has no ICMP type or code"));
    }

    Ok(Packet {
        vlan,
        src,
        dst,
        protocol,
        src_port: src_port.unwrap_or(0),
        dst_port: dst_port.unwrap_or(0),
        icmp_type: icmp_type.unwrap_or(0),
        icmp_code: icmp_code.unwrap_or(0),
    })
}

/// Parses `198.51.100.7`, `198.51.100.7:40000`, `2001:db8::7`, `[2001:db8::7]` or
/// `[2001:db8::7]:40000`.
fn parse_endpoint(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let bad_addr = |a: &str| format!("{a:?} is not an IP address");
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} in {s:?} is not a port 1-65535"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?} opens [ without closing it"))?;
        let addr: IpAddr = addr.parse().map_err(|_| bad_addr(addr))?;
        return match after {
            "" => Ok((addr, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((addr, Some(port(p)?))),
                None => Err(format!("unexpected {after:?} after {s:?}")),
            },
        };
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok((addr, None));
    }
    match s.rsplit_once(':') {
        Some((addr, p)) if !addr.contains(':') => {
            let addr: IpAddr = addr.parse().map_err(|_| bad_addr(addr))?;
            Ok((addr, Some(port(p)?)))
        }
        _ => Err(format!(
            "{s:?} is not an address; write 198.51.100.7:40000 or [2001:db8::7]:40000"
        )),
    }
}

/// What the appliance does with a described first packet, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    /// Whether the packet opens a connection that its replies pass through.
    pub tracked: bool,
    /// For a person: the verdict first, then the reasons.
    pub text: String,
}

/// Explains `pkt` as the first packet of its flow against `model`.
pub fn explain(model: &Model, settings: &Settings, pkt: &Packet) -> Explanation {
    if let Some(why) = settled_before_rules(pkt) {
        return Explanation {
            allowed: true,
            tracked: false,
            text: format!("verdict: allow\n  {why}\n"),
        };
    }
    let verdict = eval::evaluate(model, settings.unprotected, pkt);
    Explanation {
        allowed: verdict.allowed,
        tracked: verdict.allowed && verdict.stateful && opens_connection(pkt),
        text: render(model, settings, pkt, &verdict),
    }
}

/// Why the appliance passes `pkt` without evaluating any rule, if it does:
/// neighbour discovery (ICMPv6 types 133-137), so that addresses can be
/// resolved whatever the rules say.
fn settled_before_rules(pkt: &Packet) -> Option<String> {
    if pkt.protocol != proto::ICMPV6 {
        return None;
    }
    let name = match pkt.icmp_type {
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbour solicitation",
        136 => "neighbour advertisement",
        137 => "redirect",
        _ => return None,
    };
    Some(format!(
        "neighbour discovery ({name}, icmpv6 type {}) passes without evaluation, so that addresses can be resolved",
        pkt.icmp_type
    ))
}

/// Whether an allowed first packet of a stateful policy opens a connection:
/// any protocol but ICMP, and of ICMP an echo request only.
fn opens_connection(pkt: &Packet) -> bool {
    match pkt.protocol {
        proto::ICMP => pkt.icmp_type == 8,
        proto::ICMPV6 => pkt.icmp_type == 128,
        _ => true,
    }
}

/// Whether `pkt` is an ICMP error (destination unreachable, packet too big,
/// time exceeded, parameter problem), which passes as related traffic when
/// the packet it quotes belongs to a live connection.
fn is_icmp_error(pkt: &Packet) -> bool {
    match pkt.protocol {
        proto::ICMP => matches!(pkt.icmp_type, 3 | 11 | 12),
        proto::ICMPV6 => matches!(pkt.icmp_type, 1..=4),
        _ => false,
    }
}

/// Renders a verdict for a person: the verdict first, then one line per side.
fn render(model: &Model, settings: &Settings, pkt: &Packet, verdict: &Verdict) -> String {
    let mut out = String::new();
    let word = if verdict.allowed { "allow" } else { "deny" };
    let _ = writeln!(out, "verdict: {word}");
    let Some(vpc) = verdict.vpc.and_then(|id| model.vpc(id)) else {
        let vlan = pkt
            .vlan
            .map_or("untagged frames".to_owned(), |v| format!("vlan {v}"));
        let _ = writeln!(
            out,
            "  no vpc for {vlan}: unprotected traffic, settings.unprotected = {}",
            unprotected_word(settings)
        );
        return out;
    };
    let tag = vpc.vlan.map_or("untagged".to_owned(), |v| format!("vlan {v}"));
    let _ = writeln!(out, "  vpc {:?} ({tag})", vpc.name);
    if verdict.checks.is_empty() {
        let _ = writeln!(
            out,
            "  neither {} nor {} is a protected interface: settings.unprotected = {}",
            pkt.src,
            pkt.dst,
            unprotected_word(settings)
        );
        return out;
    }
    for direction in [Direction::Ingress, Direction::Egress] {
        match verdict.checks.iter().find(|c| c.direction == direction) {
            Some(check) => render_check(&mut out, model, check),
            None => {
                let (role, addr) = match direction {
                    Direction::Ingress => ("destination", pkt.dst),
                    Direction::Egress => ("source", pkt.src),
                };
                let _ = writeln!(
                    out,
                    "  {:<7}  {role} {addr} is not a protected interface: not evaluated",
                    direction.as_str()
                );
            }
        }
    }
    if verdict.allowed {
        let state = if verdict.checks.iter().all(|c| c.decision == Decision::NotFiltered) {
            "not tracked: no security group applies (bare metal without groups is not filtered)"
        } else if !verdict.stateful {
            "not tracked: an evaluated group is stateless, so every packet is evaluated in its own direction"
        } else if !opens_connection(pkt) {
            "not tracked: of ICMP, only an echo request opens a connection"
        } else {
            "tracked: every evaluated group is stateful, so replies pass as part of the connection"
        };
        let _ = writeln!(out, "  connection {state}");
    }
    if is_icmp_error(pkt) {
        let _ = writeln!(
            out,
            "  an ICMP error quoting a packet of a live connection passes as related traffic, unevaluated; this verdict is for one that quotes none"
        );
    }
    out
}

fn unprotected_word(settings: &Settings) -> &'static str {
    match settings.unprotected {
        crate::settings::Unprotected::Forward => "forward",
        crate::settings::Unprotected::Drop => "drop",
    }
}

fn render_check(out: &mut String, model: &Model, check: &Check) {
    let iface = model.interface(check.interface).map_or("?", |i| i.name.as_str());
    let word = if check.decision.allows() { "allow" } else { "deny" };
    let group_name = |id| model.group(id).map_or("?".to_owned(), |g| g.name.clone());
    let why = match check.decision {
        Decision::Rule {
            group, index, rule, ..
        } => {
            let text = model
                .group(group)
                .and_then(|g| g.rules.get(index - 1))
                .map_or_else(String::new, |r| model.rule_text(r));
            format!("group {:?} rule {index} ({rule}): {text}", group_name(group))
        }
        Decision::IntraGroup { group } => format!(
            "intra-group accept: both ends are members of group {:?} (intra_group = accept)",
            group_name(group)
        ),
        Decision::ImplicitDeny => "no rule matched: implicit deny".to_owned(),
        Decision::NotFiltered => "bare-metal interface without groups: not filtered".to_owned(),
    };
    let _ = writeln!(
        out,
        "  {:<7}  interface {iface:?}: {word}: {why}",
        check.direction.as_str()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    /// Neighbour discovery passes unevaluated, as the appliance passes it,
    /// even where no rule allows ICMPv6 at all; other ICMPv6 is judged by the
    /// rules.
    #[test]
    fn neighbour_discovery_passes_without_evaluation() {
        let text = r#"
[[vpc]]
name = "v"

[[security_group]]
vpc = "v"
name = "closed"
kind = "advanced"

[[interface]]
vpc = "v"
name = "i"
addresses = ["2001:db8:1::10"]
groups = ["closed"]
"#;
        let config = crate::config::Config::parse(text, "test").unwrap();
        for t in 133..=137 {
            let pkt = parse_packet(
                &words(&format!("icmpv6 2001:db8::7 -> 2001:db8:1::10 type {t}")),
                None,
            )
            .unwrap();
            let e = explain(&config.model, &config.settings, &pkt);
            assert!(e.allowed && !e.tracked, "type {t}: {}", e.text);
            assert!(e.text.contains("neighbour discovery"), "{}", e.text);
            assert!(e.text.contains("passes without evaluation"), "{}", e.text);
        }
        for t in [128, 132, 138] {
            let pkt = parse_packet(
                &words(&format!("icmpv6 2001:db8::7 -> 2001:db8:1::10 type {t}")),
                None,
            )
            .unwrap();
            let e = explain(&config.model, &config.settings, &pkt);
            assert!(!e.allowed, "type {t}: {}", e.text);
            assert!(e.text.contains("implicit deny"), "{}", e.text);
        }
    }

    #[test]
    fn parses_the_documented_forms() {
        let p = parse_packet(&words("tcp 198.51.100.7:40000 -> 198.18.1.10:443"), None).unwrap();
        assert_eq!((p.protocol, p.src_port, p.dst_port), (6, 40000, 443));
        assert_eq!(p.dst, "198.18.1.10".parse::<IpAddr>().unwrap());
        let p = parse_packet(&words("tcp [2001:db8::7]:40000 -> [2001:db8:1::10]:443"), None).unwrap();
        assert_eq!(p.src, "2001:db8::7".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst_port, 443);
        let p = parse_packet(&words("icmp 198.51.100.7 -> 198.18.1.10 type 8 code 0"), Some(7)).unwrap();
        assert_eq!((p.protocol, p.icmp_type, p.icmp_code, p.vlan), (1, 8, 0, Some(7)));
        let p = parse_packet(&["udp 198.51.100.7:5353->198.18.1.10:53".to_owned()], None).unwrap();
        assert_eq!(p.dst_port, 53);
        let p = parse_packet(&words("icmpv6 2001:db8::7 to 2001:db8:1::10 type 128"), None).unwrap();
        assert_eq!((p.protocol, p.icmp_type), (58, 128));
        let p = parse_packet(&words("47 198.51.100.7 -> 198.18.1.10"), None).unwrap();
        assert_eq!(p.protocol, 47);
    }

    #[test]
    fn rejects_incomplete_or_inconsistent_packets() {
        for (input, needle) in [
            (
                "tcp 198.51.100.7 -> 198.18.1.10:443",
                "needs a source and a destination port",
            ),
            ("tcp 198.51.100.7:1 198.18.1.10:443 x", "expected ->"),
            ("icmp 198.51.100.7 -> 198.18.1.10", "needs a type"),
            ("icmp 2001:db8::7 -> 2001:db8::8 type 128", "use icmpv6"),
            ("udp 198.51.100.7:1 -> 2001:db8::8:53", "different IP versions"),
            ("icmp 198.51.100.7:5 -> 198.18.1.10 type 8", "has no ports"),
            ("tcp 198.51.100.7:1 -> 198.18.1.10:443 type 3", "no ICMP type"),
            ("tcp 198.51.100.7:99999 -> 198.18.1.10:443", "not a port"),
            ("all 198.51.100.7 -> 198.18.1.10", "one protocol"),
            ("tcp 198.51.100.7:1 ->", "incomplete"),
            ("icmp 198.51.100.7 -> 198.18.1.10 type 300", "not a number 0-255"),
        ] {
            let err = parse_packet(&words(input), None).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
