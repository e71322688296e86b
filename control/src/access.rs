//! Access rules (`[servers.NAME.access]`): an ordered list of `allow|deny IP-or-CIDR` rules and a
//! default verdict. The first rule whose network contains the client decides; when none does,
//! the default does. Parsed once on the control thread; a shard only walks the list.

use crate::balance::canonical_ip;
use crate::config::model::Access;
use std::fmt;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    fn parse(word: &str) -> Option<Verdict> {
        match word {
            "allow" => Some(Verdict::Allow),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

/// An address and prefix length; the address has its host bits cleared. Also the form of
/// `[accept_proxy_protocol] trusted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    V4(u32, u32),
    V6(u128, u32),
}

impl Network {
    /// `IP` or `IP/PREFIX`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| format!("{address:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("prefix length {p:?} must be a number from 0 to {max}"))?,
        };
        Ok(match ip {
            IpAddr::V4(v4) => Network::V4(u32::from(v4) & mask(prefix, 32) as u32, prefix),
            // An IPv4-mapped network matches IPv4 clients, as those are compared as IPv4.
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => Network::V4(
                v6.to_ipv4_mapped().map(u32::from).unwrap_or(0) & mask(prefix - 96, 32) as u32,
                prefix - 96,
            ),
            IpAddr::V6(v6) => Network::V6(u128::from(v6) & mask(prefix, 128), prefix),
        })
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address taken as IPv4, as a client's is) is in it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_canonical(canonical_ip(ip))
    }

    fn contains_canonical(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Network::V4(net, prefix), IpAddr::V4(v4)) => u32::from(v4) & mask(prefix, 32) as u32 == net,
            (Network::V6(net, prefix), IpAddr::V6(v6)) => u128::from(v6) & mask(prefix, 128) == net,
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-wide word set.
fn mask(prefix: u32, bits: u32) -> u128 {
    let all = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    if prefix == 0 {
        0
    } else {
        all & !((1u128 << (bits - prefix)) - 1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRules {
    default: Verdict,
    rules: Vec<(Verdict, Network)>,
}

/// Why a section is invalid, with the key (`default` or `rules`) it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl AccessRules {
    pub fn from_section(section: &Access) -> Result<AccessRules, AccessError> {
        // Left out or empty is allow, as in gobetween.
        let default = match section.default.as_deref().unwrap_or("") {
            "" => Verdict::Allow,
            word => Verdict::parse(word).ok_or_else(|| AccessError {
                field: "default",
                message: format!("must be \"allow\" or \"deny\", not {word:?}"),
            })?,
        };
        let rules = section
            .rules
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, rule)| {
                parse_rule(rule).map_err(|why| AccessError {
                    field: "rules",
                    message: format!("rule {} {rule:?}: {why} (expected \"allow|deny IP-or-CIDR\")", i + 1),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AccessRules { default, rules })
    }

    /// Rules that let nobody in: what a server falls back to if its rules cannot be read.
    pub fn deny_all() -> AccessRules {
        AccessRules { default: Verdict::Deny, rules: Vec::new() }
    }

    pub fn verdict(&self, client: IpAddr) -> Verdict {
        let client = canonical_ip(client);
        self.rules
            .iter()
            .find(|(_, net)| net.contains_canonical(client))
            .map_or(self.default, |(verdict, _)| *verdict)
    }

    pub fn allows(&self, client: IpAddr) -> bool {
        self.verdict(client) == Verdict::Allow
    }
}

fn parse_rule(rule: &str) -> Result<(Verdict, Network), String> {
    let mut words = rule.split_whitespace();
    let (Some(verdict), Some(network), None) = (words.next(), words.next(), words.next()) else {
        return Err("needs exactly two words".into());
    };
    let verdict = Verdict::parse(verdict).ok_or_else(|| format!("{verdict:?} is neither allow nor deny"))?;
    Ok((verdict, Network::parse(network)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(default: &str, rules: &[&str]) -> Result<AccessRules, AccessError> {
        AccessRules::from_section(&Access {
            default: Some(default.into()),
            rules: Some(rules.iter().map(|r| r.to_string()).collect()),
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn no_default_is_allow() {
        let r =
            AccessRules::from_section(&Access { default: None, rules: Some(vec!["deny 10.0.0.1".into()]) })
                .unwrap();
        assert!(r.allows(ip("10.0.0.2")));
        assert!(!r.allows(ip("10.0.0.1")));
        assert!(rules("", &[]).unwrap().allows(ip("10.0.0.2")));
    }

    #[test]
    fn first_match_wins() {
        let r = rules("allow", &["deny 127.0.0.1", "deny 192.168.0.1", "allow 192.168.0.1/24"]).unwrap();
        assert!(!r.allows(ip("127.0.0.1")));
        assert!(!r.allows(ip("192.168.0.1")));
        assert!(r.allows(ip("192.168.0.2")));
        assert!(r.allows(ip("10.1.1.1")));
        let r = rules("deny", &["allow 10.0.0.0/8", "deny 10.1.0.0/16"]).unwrap();
        assert!(r.allows(ip("10.1.2.3")), "the earlier, wider rule decides");
        assert!(!r.allows(ip("11.0.0.1")));
    }

    #[test]
    fn ipv6_and_mapped_clients() {
        let r = rules("deny", &["allow ::1", "allow 2001:db8::/32", "allow 127.0.0.0/8"]).unwrap();
        assert!(r.allows(ip("::1")));
        assert!(r.allows(ip("2001:db8:ffff::7")));
        assert!(!r.allows(ip("2001:db9::1")));
        assert!(r.allows(ip("::ffff:127.0.0.5")), "v4-mapped clients are IPv4 clients");
        assert!(!r.allows(ip("::ffff:10.0.0.1")));
        let mapped = rules("deny", &["allow ::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.allows(ip("10.200.0.1")));
    }

    #[test]
    fn edges_of_prefixes() {
        let r = rules("deny", &["allow 0.0.0.0/0"]).unwrap();
        assert!(r.allows(ip("203.0.113.9")));
        assert!(!r.allows(ip("::2")), "an IPv4 rule never matches IPv6");
        let r = rules("allow", &["deny ::/0"]).unwrap();
        assert!(!r.allows(ip("fe80::1")));
        assert!(r.allows(ip("1.2.3.4")));
        let r = rules("deny", &["allow 10.0.0.128/25"]).unwrap();
        assert!(r.allows(ip("10.0.0.255")));
        assert!(!r.allows(ip("10.0.0.127")));
    }

    #[test]
    fn bad_rules_name_the_rule() {
        let e = rules("allow", &["deny 10.0.0.1", "deny 10.0.0.300"]).unwrap_err();
        assert_eq!(e.field, "rules");
        assert!(e.message.contains("rule 2 \"deny 10.0.0.300\""), "{}", e.message);
        for bad in
            ["permit 10.0.0.1", "deny", "deny 10.0.0.0/33", "deny ::/129", "deny 1.2.3.4 extra", "deny x/8"]
        {
            assert!(rules("allow", &[bad]).is_err(), "{bad} was accepted");
        }
        assert_eq!(rules("maybe", &[]).unwrap_err().field, "default");
    }
}
