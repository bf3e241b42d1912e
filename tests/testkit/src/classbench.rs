//! Reads ClassBench rule sets and header traces (format in
//! `../shared/classbench/README.md`) into classifier rules and keys.
//!
//! Line `i` (0-based) of a rules file becomes the rule of priority `i` and id `i`,
//! action allow, so first match in file order is the deciding rule. The flags
//! field is ignored, as by most 5-tuple classifiers (and rte_acl). This module
//! parses text; reading files is the caller's business.

use rampart_dataplane::classify::{AddrMatch, Key, Prefix, Rule, RuleAction};

/// A line that is not in ClassBench's format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// Parses a `.rules` file.
pub fn parse_rules(text: &str) -> Result<Vec<Rule<u32>>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            u32::try_from(i)
                .map_err(|_| "more than 2^32 rules".to_owned())
                .and_then(|index| parse_rule(l, index))
                .map_err(|message| ParseError { line: i + 1, message })
        })
        .collect()
}

fn parse_rule(line: &str, index: u32) -> Result<Rule<u32>, String> {
    let t: Vec<&str> = line.split_whitespace().collect();
    // @SIP/LEN DIP/LEN SPLO : SPHI DPLO : DPHI PROTO/MASK FLAGS/MASK
    if t.len() != 10 || t[3] != ":" || t[6] != ":" {
        return Err(format!("expected 10 fields like `@1.2.3.0/24 5.6.7.8/32 0 : 65535 80 : 80 0x06/0xFF 0x0000/0x0000`, found {} in {line:?}", t.len()));
    }
    let src = t[0]
        .strip_prefix('@')
        .ok_or("the source prefix must start with @")?;
    let port = |s: &str| s.parse::<u16>().map_err(|_| format!("{s:?} is not a port"));
    let range = |lo: &str, hi: &str| -> Result<(u16, u16), String> {
        let (lo, hi) = (port(lo)?, port(hi)?);
        if lo > hi {
            return Err(format!("port range {lo} : {hi} is inverted"));
        }
        Ok((lo, hi))
    };
    let (proto, mask) = t[8].split_once('/').ok_or("protocol must be VALUE/MASK")?;
    let hex = |s: &str| {
        u8::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| format!("{s:?} is not a hex byte"))
    };
    let proto = match hex(mask)? {
        0 => None,
        0xff => Some(hex(proto)?),
        m => return Err(format!("protocol mask {m:#04x} is neither 0x00 nor 0xFF")),
    };
    Ok(Rule {
        src: AddrMatch::Prefix(prefix(src)?),
        dst: AddrMatch::Prefix(prefix(t[1])?),
        proto,
        src_ports: range(t[2], t[4])?,
        dst_ports: range(t[5], t[7])?,
        priority: index,
        action: RuleAction::Allow,
        id: index,
    })
}

fn prefix(s: &str) -> Result<Prefix<u32>, String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/LENGTH"))?;
    let addr: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("{len:?} is not a prefix length 0-32"))?;
    Ok(Prefix::new(u32::from(addr), len))
}

/// Parses a `.trace` file into keys (the flags and generating-rule columns are
/// dropped: the answer is computed, not read).
pub fn parse_trace(text: &str) -> Result<Vec<Key<u32>>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_header(l).map_err(|message| ParseError { line: i + 1, message }))
        .collect()
}

fn parse_header(line: &str) -> Result<Key<u32>, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 5 {
        return Err(format!("expected SIP DIP SPORT DPORT PROTO ..., found {line:?}"));
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("{s:?} is not a number"));
    let fit = |v: u64, max: u64, what: &str| {
        if v <= max {
            Ok(v)
        } else {
            Err(format!("{what} {v} is out of range"))
        }
    };
    // Each value was checked against its type's maximum just above.
    Ok(Key {
        src: fit(num(f[0])?, u64::from(u32::MAX), "source address")? as u32,
        dst: fit(num(f[1])?, u64::from(u32::MAX), "destination address")? as u32,
        src_port: fit(num(f[2])?, 65535, "source port")? as u16,
        dst_port: fit(num(f[3])?, 65535, "destination port")? as u16,
        proto: fit(num(f[4])?, 255, "protocol")? as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_rule_and_header() {
        let rules = parse_rules(
            "@185.29.131.97/32\t235.221.30.5/32\t0 : 65535\t1433 : 1433\t0x06/0xFF\t0x1000/0x1000\t\n",
        )
        .unwrap();
        let r = &rules[0];
        assert_eq!(
            r.src,
            AddrMatch::Prefix(Prefix::new(
                u32::from(std::net::Ipv4Addr::new(185, 29, 131, 97)),
                32
            ))
        );
        assert_eq!(
            (r.src_ports, r.dst_ports, r.proto, r.priority, r.id),
            ((0, 65535), (1433, 1433), Some(6), 0, 0)
        );
        let wild =
            parse_rules("@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n").unwrap();
        assert_eq!(wild[0].proto, None);
        let keys = parse_trace("3105719195\t1727909674\t65535\t1600\t6\t4294967295\t211\n").unwrap();
        assert_eq!(
            keys[0],
            Key {
                src: 3105719195,
                dst: 1727909674,
                src_port: 65535,
                dst_port: 1600,
                proto: 6
            }
        );
    }

    #[test]
    fn reports_the_line_of_a_malformed_entry() {
        let e = parse_rules(
            "@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n@1.2.3.4/40 x\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            parse_rules("@1.2.3.0/24\t5.6.7.8/32\t9 : 1\t80 : 80\t0x06/0xFF\t0x0/0x0\n")
                .unwrap_err()
                .message
                .contains("inverted")
        );
        assert!(parse_trace("1 2 3 70000 6\n")
            .unwrap_err()
            .message
            .contains("out of range"));
    }
}
