//! Where a proxy may send its provider calls: the client may restrict the endpoints a
//! signed manifest names to some host names, address ranges and ports, and by default a
//! proxy that came from a remote registry (one whose own address is not loopback) may not
//! reach the client's loopback or link-local addresses, which a vendor has no business
//! reaching through a client (local admin interfaces, cloud metadata at 169.254.169.254).
//!
//! Names and ports are checked before the name is resolved, addresses after it and before
//! the first packet to the provider; a refusal is an [`EndpointRefusal`] naming the
//! endpoint and the rule.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The client's rules for provider endpoints. Empty lists allow everything of their kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRules {
    /// Host names (or address literals) a provider may have, as the manifest writes them;
    /// `*.example.com` allows every name under `example.com`. Empty: any host.
    pub hosts: Vec<String>,
    /// Address ranges a provider's resolved address must be in. Empty: any address.
    pub networks: Vec<IpNet>,
    /// Ports a provider may listen on. Empty: any port.
    pub ports: Vec<u16>,
    /// Let a proxy from a remote registry reach this machine's loopback and link-local
    /// addresses (off by default).
    pub local_from_remote: bool,
}

/// Where the proxies a sandbox runs came from, for the loopback rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyOrigin {
    /// A registry on this machine (loopback), or none (proxies given directly).
    #[default]
    Local,
    /// A registry elsewhere.
    Remote,
}

/// The rule that refused an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointRule {
    /// The host is not among `hosts`.
    Hosts,
    /// The address is in none of `networks`.
    Networks,
    /// The port is not among `ports`.
    Ports,
    /// A remote registry's proxy may not reach loopback or link-local addresses.
    LocalFromRemote,
}

impl fmt::Display for EndpointRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointRule::Hosts => "provider-endpoints.hosts",
            EndpointRule::Networks => "provider-endpoints.networks",
            EndpointRule::Ports => "provider-endpoints.ports",
            EndpointRule::LocalFromRemote => {
                "no loopback or link-local address for a remote registry's proxy \
                 (provider-endpoints.local-from-remote)"
            }
        })
    }
}

/// A provider endpoint the client's policy does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider endpoint {endpoint} refused by the policy: {rule}")]
pub struct EndpointRefusal {
    /// The endpoint as the manifest names it (with the address it resolved to, if it did).
    pub endpoint: String,
    /// The rule that refused it.
    pub rule: EndpointRule,
}

impl ProxyOrigin {
    /// The origin of proxies from a registry at `registry`.
    pub fn of_registry(registry: SocketAddr) -> Self {
        if registry.ip().to_canonical().is_loopback() {
            ProxyOrigin::Local
        } else {
            ProxyOrigin::Remote
        }
    }
}

impl EndpointRules {
    /// Whether there is nothing to check beyond the loopback rule.
    pub fn is_open(&self) -> bool {
        self.hosts.is_empty() && self.networks.is_empty() && self.ports.is_empty()
    }

    /// Checks the host and port `endpoint` (`host:port`) names, before resolving it. An
    /// endpoint that cannot be split is left to the resolver, which refuses it.
    pub fn check_name(&self, endpoint: &str) -> Result<(), EndpointRefusal> {
        let Some((host, port)) = split_endpoint(endpoint) else {
            return Ok(());
        };
        let refuse = |rule| EndpointRefusal {
            endpoint: endpoint.to_string(),
            rule,
        };
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| host_matches(h, host)) {
            return Err(refuse(EndpointRule::Hosts));
        }
        if !self.ports.is_empty() && !port.is_ok_and(|p| self.ports.contains(&p)) {
            return Err(refuse(EndpointRule::Ports));
        }
        Ok(())
    }

    /// Checks the address `endpoint` resolved to, for proxies from `origin`.
    pub fn check_addr(
        &self,
        endpoint: &str,
        addr: SocketAddr,
        origin: ProxyOrigin,
    ) -> Result<(), EndpointRefusal> {
        let ip = addr.ip().to_canonical();
        let refuse = |rule| EndpointRefusal {
            endpoint: if endpoint == addr.to_string() {
                endpoint.to_string()
            } else {
                format!("{endpoint} ({addr})")
            },
            rule,
        };
        if !self.ports.is_empty() && !self.ports.contains(&addr.port()) {
            return Err(refuse(EndpointRule::Ports));
        }
        if !self.networks.is_empty() && !self.networks.iter().any(|n| n.contains(&ip)) {
            return Err(refuse(EndpointRule::Networks));
        }
        if origin == ProxyOrigin::Remote && !self.local_from_remote && is_local(ip) {
            return Err(refuse(EndpointRule::LocalFromRemote));
        }
        Ok(())
    }
}

/// Loopback, link-local or unspecified (which reaches this machine).
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// `host:port` or `[v6]:port` split in two; the port as parsed.
fn split_endpoint(endpoint: &str) -> Option<(&str, Result<u16, std::num::ParseIntError>)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse()))
}

/// Whether `host` is `pattern`, or under it for `*.suffix` (case-insensitive).
fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host
                    .to_ascii_lowercase()
                    .ends_with(&suffix.to_ascii_lowercase())
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_remote_registrys_proxy_may_not_reach_loopback_or_link_local() {
        let rules = EndpointRules::default();
        for local in [
            "127.0.0.1:4433",
            "127.3.2.1:1",
            "169.254.169.254:80",
            "[::1]:4433",
            "[fe80::1]:4433",
            "[::ffff:127.0.0.1]:4433",
            "0.0.0.0:4433",
        ] {
            let e = rules
                .check_addr(local, addr(local), ProxyOrigin::Remote)
                .unwrap_err();
            assert_eq!(e.rule, EndpointRule::LocalFromRemote, "{local}");
            rules
                .check_addr(local, addr(local), ProxyOrigin::Local)
                .unwrap();
        }
        rules
            .check_addr("x", addr("192.0.2.7:4433"), ProxyOrigin::Remote)
            .unwrap();
        let allowed = EndpointRules {
            local_from_remote: true,
            ..EndpointRules::default()
        };
        allowed
            .check_addr("x", addr("127.0.0.1:1"), ProxyOrigin::Remote)
            .unwrap();
        assert_eq!(
            ProxyOrigin::of_registry(addr("127.0.0.1:1")),
            ProxyOrigin::Local
        );
        assert_eq!(
            ProxyOrigin::of_registry(addr("[::1]:1")),
            ProxyOrigin::Local
        );
        assert_eq!(
            ProxyOrigin::of_registry(addr("192.0.2.1:1")),
            ProxyOrigin::Remote
        );
    }

    #[test]
    fn hosts_networks_and_ports_restrict_endpoints_and_name_the_rule() {
        let rules = EndpointRules {
            hosts: vec!["provider.example".into(), "*.example.net".into()],
            networks: vec!["192.0.2.0/24".parse().unwrap()],
            ports: vec![4433],
            local_from_remote: false,
        };
        rules.check_name("provider.example:4433").unwrap();
        rules.check_name("a.b.EXAMPLE.net:4433").unwrap();
        for (endpoint, rule) in [
            ("evil.example:4433", EndpointRule::Hosts),
            ("example.net:4433", EndpointRule::Hosts),
            ("notexample.net:4433", EndpointRule::Hosts),
            ("provider.example:22", EndpointRule::Ports),
        ] {
            let e = rules.check_name(endpoint).unwrap_err();
            assert_eq!(e.rule, rule, "{endpoint}");
            assert!(e.to_string().contains(endpoint), "{e}");
        }
        rules
            .check_addr(
                "provider.example:4433",
                addr("192.0.2.9:4433"),
                ProxyOrigin::Local,
            )
            .unwrap();
        let e = rules
            .check_addr(
                "provider.example:4433",
                addr("198.51.100.1:4433"),
                ProxyOrigin::Local,
            )
            .unwrap_err();
        assert_eq!(e.rule, EndpointRule::Networks);
        assert_eq!(
            e.to_string(),
            "provider endpoint provider.example:4433 (198.51.100.1:4433) refused by the \
             policy: provider-endpoints.networks"
        );
    }
}
