//! IP allowlists: the networks a key may be used from.
//!
//! A key's [`allowed_networks`](crate::KeyRecord::allowed_networks) is either
//! [`Networks::any`] (the default) or a list of CIDR blocks, IPv4 and IPv6. Verification
//! checks the client address of the [`RequestContext`](crate::RequestContext) against it
//! only after the secret matched, and refuses a key used from elsewhere with
//! [`VerifyError::NetworkNotAllowed`](crate::manager::VerifyError::NetworkNotAllowed) (the
//! list itself is never revealed). A key with a list and a request without a client address
//! is refused too: the check fails closed. A delegated key is used only from networks every
//! ancestor allows as well, and a key issued or edited through another key gets networks
//! within that key's.
//!
//! ```
//! use keyward::network::Networks;
//! let office = Networks::only(["203.0.113.0/24", "2001:db8::/32"])?;
//! assert!(office.allows("203.0.113.7".parse()?));
//! assert!(office.allows("2001:db8::1".parse()?));
//! assert!(!office.allows("198.51.100.1".parse()?));
//! // An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is the IPv4 address.
//! assert!(office.allows("::ffff:203.0.113.7".parse()?));
//! assert!(Networks::only(["203.0.113.0/28"])?.is_within(&office));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Client addresses come from the connection. A service behind a proxy names the proxies
//! it trusts with [`TrustedProxies`]; only then is a forwarded-for header believed, and
//! only for the hops those proxies added.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most CIDR blocks in one list.
pub const MAX_NETWORKS: usize = 64;

/// Why a list of networks was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// An entry is neither a CIDR block (`10.0.0.0/8`, `2001:db8::/32`) nor an address.
    #[error("{0:?} is not a CIDR block or IP address")]
    Malformed(String),
    /// An explicit list without any entry (it would allow nothing; use
    /// [`Networks::any`] for no restriction).
    #[error("an allowlist needs at least one network")]
    Empty,
    /// More than [`MAX_NETWORKS`] entries.
    #[error("at most {MAX_NETWORKS} networks are allowed")]
    TooMany,
}

/// The networks a key may be used from: any, or a list of CIDR blocks.
///
/// The list is kept normalized (host bits cleared, sorted, no block inside another), so
/// two lists that allow the same addresses are equal.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Networks(Option<Box<[IpNet]>>);

impl Networks {
    /// No restriction: every client address (and a request without one).
    #[must_use]
    pub const fn any() -> Self {
        Self(None)
    }

    /// Only these networks. Each entry is a CIDR block or a single address (a /32 or
    /// /128).
    ///
    /// # Errors
    /// [`NetworkError`] for a malformed entry, an empty list or one too long.
    pub fn only<I, T>(networks: I) -> Result<Self, NetworkError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut nets = Vec::new();
        for entry in networks {
            if nets.len() == MAX_NETWORKS {
                return Err(NetworkError::TooMany);
            }
            nets.push(parse_net(entry.as_ref())?);
        }
        Self::from_nets(nets)
    }

    fn from_nets(mut nets: Vec<IpNet>) -> Result<Self, NetworkError> {
        if nets.is_empty() {
            return Err(NetworkError::Empty);
        }
        for net in &mut nets {
            *net = net.trunc();
        }
        // Wider blocks first at equal addresses, so a block inside another comes after it.
        nets.sort_unstable_by_key(|n| (n.addr(), n.prefix_len()));
        let mut kept: Vec<IpNet> = Vec::with_capacity(nets.len());
        for net in nets {
            if !kept.iter().any(|k| k.contains(&net)) {
                kept.push(net);
            }
        }
        Ok(Self(Some(kept.into_boxed_slice())))
    }

    /// Whether there is no restriction.
    #[must_use]
    pub fn is_any(&self) -> bool {
        self.0.is_none()
    }

    /// The blocks of an explicit list (empty for [`Networks::any`]).
    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.0.iter().flat_map(|nets| nets.iter())
    }

    /// Whether a client at `addr` may use the key. An IPv4-mapped IPv6 address is checked
    /// as the IPv4 address it carries.
    #[must_use]
    pub fn allows(&self, addr: IpAddr) -> bool {
        match &self.0 {
            None => true,
            Some(nets) => {
                let addr = addr.to_canonical();
                nets.iter().any(|net| net.contains(&addr))
            }
        }
    }

    /// Whether a request from `addr` (`None`: address unknown) may use the key: an explicit
    /// list needs a known address inside it.
    #[must_use]
    pub fn admits(&self, addr: Option<IpAddr>) -> bool {
        match addr {
            Some(addr) => self.allows(addr),
            None => self.is_any(),
        }
    }

    /// Whether every address this allows is allowed by `other` too.
    #[must_use]
    pub fn is_within(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(ours), Some(theirs)) => ours
                .iter()
                .all(|net| theirs.iter().any(|t| t.contains(net))),
        }
    }

    /// Whether nothing is allowed: only the [`intersection`](Networks::intersection) of
    /// disjoint lists is such a list (an explicit list needs an entry).
    #[must_use]
    pub fn is_nothing(&self) -> bool {
        self.0.as_ref().is_some_and(|nets| nets.is_empty())
    }

    /// The addresses both allow. Two CIDR blocks are either nested or disjoint, so the
    /// intersection is the inner block of each nested pair; a list that allows nothing
    /// ([`is_nothing`](Networks::is_nothing)) when they share no address.
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        match (&self.0, &other.0) {
            (_, None) => self.clone(),
            (None, Some(_)) => other.clone(),
            (Some(ours), Some(theirs)) => {
                let mut nets = Vec::new();
                for a in ours.iter() {
                    for b in theirs.iter() {
                        if a.contains(b) {
                            nets.push(*b);
                        } else if b.contains(a) {
                            nets.push(*a);
                        }
                    }
                }
                Self::from_nets(nets).unwrap_or(Self(Some(Box::new([]))))
            }
        }
    }
}

fn parse_net(entry: &str) -> Result<IpNet, NetworkError> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| NetworkError::Malformed(truncated(entry)))
}

/// At most 64 characters of a refused entry, so an error message stays short.
fn truncated(entry: &str) -> String {
    entry.chars().take(64).collect()
}

impl fmt::Debug for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Networks::any"),
            Some(nets) => f.debug_list().entries(nets.iter()).finish(),
        }
    }
}

/// `any`, or the blocks separated by spaces (`10.0.0.0/8 2001:db8::/32`).
impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("any"),
            Some(nets) => {
                for (i, net) in nets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{net}")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses the [`Display`](fmt::Display) form: `any`, or blocks separated by spaces or
/// commas.
impl FromStr for Networks {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "any" {
            return Ok(Self::any());
        }
        Self::only(s.split([' ', ',']).filter(|e| !e.trim().is_empty()))
    }
}

/// JSON `null` for [`Networks::any`], otherwise a list of CIDR strings.
impl Serialize for Networks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => serializer.serialize_none(),
            Some(nets) => serializer.collect_seq(nets.iter().map(ToString::to_string)),
        }
    }
}

/// An empty list reads back as the list that allows nothing (what
/// [`intersection`](Networks::intersection) of disjoint lists gives, and what it serializes
/// as), so every value survives a round trip.
impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<Vec<String>>::deserialize(deserializer)? {
            None => Ok(Self::any()),
            Some(list) if list.is_empty() => Ok(Self(Some(Box::new([])))),
            Some(list) => Self::only(list).map_err(serde::de::Error::custom),
        }
    }
}

/// The proxies whose forwarded-for headers are believed.
///
/// Without any (the default), the client address is the connection's peer and every
/// `X-Forwarded-For` header is ignored: anyone can send one. With trusted proxies, the
/// header is read from the right: each hop added by a trusted proxy is skipped, and the
/// first address not in a trusted network is the client. Name proxies only: a client whose
/// own address is in a trusted network can name any address.
///
/// A hop may be an address or an address with a port (`203.0.113.9:4711`,
/// `[2001:db8::1]:443`). A hop that is neither (`unknown`, an empty entry, bytes that are not
/// text) makes the client unknown (`None`), so an IP allowlist refuses the request instead
/// of judging it by a proxy's address. Each header line is split on its own, so a client's
/// unreadable header line cannot hide the hop its proxy appended after it.
///
/// ```
/// use std::net::IpAddr;
/// use keyward::network::TrustedProxies;
/// let proxies = TrustedProxies::new(["10.0.0.0/8"])?;
/// let peer: IpAddr = "10.1.2.3".parse()?;
/// // The load balancer (10.1.2.3) forwarded a request from 198.51.100.7.
/// let client = proxies.client_addr(peer, [&b"203.0.113.9, 198.51.100.7"[..]]);
/// assert_eq!(client, Some("198.51.100.7".parse()?));
/// // A peer that is not a trusted proxy is the client, whatever it claims.
/// let direct: IpAddr = "192.0.2.1".parse()?;
/// assert_eq!(proxies.client_addr(direct, [&b"198.51.100.7"[..]]), Some(direct));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Option<Networks>);

impl TrustedProxies {
    /// Trust no proxy: the peer address is the client.
    #[must_use]
    pub const fn none() -> Self {
        Self(None)
    }

    /// Trust the proxies in these networks.
    ///
    /// # Errors
    /// As [`Networks::only`].
    pub fn new<I, T>(networks: I) -> Result<Self, NetworkError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Networks::only(networks).map(|n| Self(Some(n)))
    }

    /// The client's address, given the connection's `peer` and the raw values of its
    /// `X-Forwarded-For` header lines, in the order they came; `None` when a hop that
    /// decides it cannot be read.
    #[must_use]
    pub fn client_addr<'a, I>(&self, peer: IpAddr, forwarded_for: I) -> Option<IpAddr>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        let Some(trusted) = &self.0 else {
            return Some(peer);
        };
        if !trusted.allows(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for line in forwarded_for.into_iter().rev() {
            if line.iter().all(u8::is_ascii_whitespace) {
                // An empty header line names nobody.
                continue;
            }
            for hop in line.rsplit(|&b| b == b',') {
                client = hop_addr(hop)?;
                if !trusted.allows(client) {
                    return Some(client);
                }
            }
        }
        // Every hop is a trusted proxy: the last one named is the client.
        Some(client)
    }
}

/// The address of one forwarded-for hop: an IP address, or a socket address (`a.b.c.d:port`,
/// `[v6]:port`), with surrounding spaces; `None` for anything else.
fn hop_addr(hop: &[u8]) -> Option<IpAddr> {
    let text = core::str::from_utf8(hop).ok()?.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> Networks {
        Networks::only(list).expect("valid networks")
    }

    #[test]
    fn normalizes() {
        assert_eq!(
            nets(&["10.1.2.3/8", "10.0.0.0/16", "2001:db8::1"]),
            nets(&["2001:db8::1/128", "10.0.0.0/8"])
        );
        assert_eq!(
            nets(&["10.1.2.3/8", "192.0.2.1"]).to_string(),
            "10.0.0.0/8 192.0.2.1/32"
        );
    }

    #[test]
    fn refuses_bad_lists() {
        assert_eq!(
            Networks::only(["10.0.0.0/33"]),
            Err(NetworkError::Malformed("10.0.0.0/33".into()))
        );
        assert_eq!(Networks::only([""; 0]), Err(NetworkError::Empty));
        assert_eq!(
            Networks::only(["not an ip"]).map(|_| ()),
            Err(NetworkError::Malformed("not an ip".into()))
        );
        let many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert_eq!(Networks::only(&many), Err(NetworkError::TooMany));
        assert_eq!("".parse::<Networks>(), Err(NetworkError::Empty));
    }

    #[test]
    fn text_and_json_round_trip() {
        for n in [Networks::any(), nets(&["10.0.0.0/8", "::1"])] {
            assert_eq!(n.to_string().parse::<Networks>(), Ok(n.clone()));
            let json = serde_json::to_string(&n).expect("serializes");
            assert_eq!(
                serde_json::from_str::<Networks>(&json).expect("reads back"),
                n
            );
        }
        assert_eq!(
            serde_json::to_string(&Networks::any()).expect("json"),
            "null"
        );
        assert!(serde_json::from_str::<Networks>("[\"10.0.0.0/99\"]").is_err());
        // The list that allows nothing (an intersection of disjoint lists) reads back too, so
        // a stored key with it still decodes.
        let nothing = nets(&["10.0.0.0/8"]).intersection(&nets(&["192.0.2.0/24"]));
        assert!(nothing.is_nothing());
        let json = serde_json::to_string(&nothing).expect("serializes");
        assert_eq!(json, "[]");
        let back = serde_json::from_str::<Networks>(&json).expect("reads back");
        assert!(back.is_nothing());
        assert_eq!(back, nothing);
    }

    #[test]
    fn unknown_address_only_without_list() {
        assert!(Networks::any().admits(None));
        assert!(!nets(&["0.0.0.0/0", "::/0"]).admits(None));
    }

    #[test]
    fn forwarded_for_needs_trust() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let none = TrustedProxies::none();
        let peer = ip("10.0.0.1");
        assert_eq!(none.client_addr(peer, [&b"1.2.3.4"[..]]), Some(peer));
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).expect("valid");
        let from = |lines: &[&[u8]]| trusted.client_addr(peer, lines.iter().copied());
        assert_eq!(from(&[b"1.2.3.4, 10.0.0.2"]), Some(ip("1.2.3.4")));
        // Ports, bracketed IPv6, spaces.
        assert_eq!(from(&[b"1.2.3.4:4711"]), Some(ip("1.2.3.4")));
        assert_eq!(
            from(&[b" [2001:db8::1]:443 , 10.0.0.2"]),
            Some(ip("2001:db8::1"))
        );
        // Several lines are one list, the last line's hops first.
        assert_eq!(from(&[b"1.2.3.4", b"10.0.0.2"]), Some(ip("1.2.3.4")));
        // A client's unreadable line does not hide the hop its proxy appended.
        assert_eq!(from(&[b"\xff\xfe, 1.2.3.4"]), Some(ip("1.2.3.4")));
        assert_eq!(from(&[b"\xff", b"1.2.3.4"]), Some(ip("1.2.3.4")));
        // An unreadable hop that decides: unknown, never the proxy.
        for bad in [
            &b"garbage"[..],
            b"1.2.3.4,,10.0.0.2",
            b"\xff",
            b"unknown, 10.0.0.2",
        ] {
            assert_eq!(from(&[bad]), None, "{bad:?}");
        }
        // Beyond the first untrusted hop nothing is read.
        assert_eq!(from(&[b"garbage, 1.2.3.4"]), Some(ip("1.2.3.4")));
        // No header, or an empty one: the proxy itself is the client.
        assert_eq!(from(&[]), Some(peer));
        assert_eq!(from(&[b"  "]), Some(peer));
        // Every hop trusted: the leftmost.
        assert_eq!(from(&[b"10.9.9.9, 10.0.0.2"]), Some(ip("10.9.9.9")));
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| IpNet::V4(
                ipnet::Ipv4Net::new(a.into(), p).expect("prefix in range")
            )),
            (any::<u128>(), 0u8..=128).prop_map(|(a, p)| IpNet::V6(
                ipnet::Ipv6Net::new(a.into(), p).expect("prefix in range")
            )),
        ]
    }

    fn arb_networks() -> impl Strategy<Value = Networks> {
        prop_oneof![
            Just(Networks::any()),
            proptest::collection::vec(arb_net(), 1..6)
                .prop_map(|v| Networks::from_nets(v).expect("non-empty")),
        ]
    }

    fn arb_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
            any::<u128>().prop_map(|a| IpAddr::V6(a.into())),
        ]
    }

    proptest! {
        /// The intersection allows exactly what both allow, and lies within both.
        #[test]
        fn intersection_is_exact(a in arb_networks(), b in arb_networks(), addrs in proptest::collection::vec(arb_addr(), 16)) {
            let both = a.intersection(&b);
            for addr in addrs {
                let expected = a.allows(addr) && b.allows(addr);
                prop_assert_eq!(both.allows(addr), expected);
            }
            prop_assert!(both.is_within(&a));
            prop_assert!(both.is_within(&b));
            prop_assert_eq!(both.is_nothing(), !both.is_any() && both.iter().next().is_none());
        }

        /// `is_within` agrees with membership: whatever the inner list allows, the outer does.
        #[test]
        fn within_means_subset(a in arb_networks(), b in arb_networks(), addrs in proptest::collection::vec(arb_addr(), 16)) {
            if a.is_within(&b) {
                for addr in addrs {
                    prop_assert!(!a.allows(addr) || b.allows(addr));
                }
            }
            // Including the network addresses of `a`'s own blocks.
            if a.is_within(&b) {
                for net in a.iter() {
                    prop_assert!(b.allows(net.addr()));
                }
            }
        }

        /// Parsing never panics, and what parses prints and parses back to itself.
        #[test]
        fn parse_round_trips(s in "[0-9a-f:./, ]{0,40}") {
            if let Ok(n) = s.parse::<Networks>() {
                prop_assert_eq!(n.to_string().parse::<Networks>(), Ok(n));
            }
        }
    }
}
