//! Where the hub may send requests. A callback is untrusted input (anyone may subscribe one):
//! only `http`/`https`, ports 80, 443 and 1024 and above, and no address in a loopback,
//! private, shared, link-local, unspecified, multicast, broadcast or reserved range unless
//! `--websub-allow-network` names a network holding it. The host is checked when a
//! subscription is asked for, and again by the resolver the HTTP client connects through, so
//! a name that resolves elsewhere later (DNS rebinding) is refused at connect time too.

use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why a callback may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("hub.callback must be an absolute http or https URL")]
    Scheme,
    #[error("hub.callback may not carry a user name or password")]
    UserInfo,
    #[error("hub.callback's port {0} is not allowed (80, 443, or 1024 and above)")]
    Port(u16),
    #[error(
        "hub.callback's address {0} is {1}: not allowed (an operator may allow it with --websub-allow-network)"
    )]
    Address(IpAddr, &'static str),
    #[error("hub.callback's host {0} could not be resolved")]
    Unresolved(String),
}

/// The networks callbacks may reach beyond the public Internet (`--websub-allow-network`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow: Vec<IpNet>,
}

/// What kind of special address `ip` is, if it is one: none of these is a public host.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "unspecified (0.0.0.0/8)"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private (RFC 1918)"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (RFC 6598)"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if ip.is_multicast() {
        "multicast"
    } else if a >= 240 {
        "reserved (240.0.0.0/4)"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address written as IPv6 reaches the IPv4 host: judged as one.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4);
    }
    let first = ip.segments()[0];
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if first & 0xfe00 == 0xfc00 {
        "unique local (fc00::/7)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local (fe80::/10)"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local (fec0::/10)"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

impl Policy {
    /// Whether the hub may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let Some(kind) = special(ip) else {
            return Ok(());
        };
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|m| net.contains(&m)));
        if allowed {
            Ok(())
        } else {
            Err(Refused::Address(ip, kind))
        }
    }

    /// Whether a port is one callbacks may use.
    pub fn check_port(port: u16) -> Result<(), Refused> {
        if port == 80 || port == 443 || port >= 1024 {
            Ok(())
        } else {
            Err(Refused::Port(port))
        }
    }

    /// Checks a callback URL's scheme, user info, port and (when it is an address) host; a
    /// host name is checked by [`Policy::resolve`].
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::UserInfo);
        }
        Policy::check_port(url.port_or_known_default().ok_or(Refused::Scheme)?)?;
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => self.check_ip(ip.into()),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(Refused::Scheme),
        }
    }

    /// Resolves `host` and checks every address it has: one refused address refuses the host
    /// (a name that also points at a private address is not a public callback).
    pub async fn resolve(&self, host: &str, timeout: Duration) -> Result<Vec<SocketAddr>, Refused> {
        let unresolved = || Refused::Unresolved(host.to_string());
        let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, 0)))
            .await
            .map_err(|_| unresolved())?
            .map_err(|_| unresolved())?;
        let addrs: Vec<SocketAddr> = found.collect();
        if addrs.is_empty() {
            return Err(unresolved());
        }
        for a in &addrs {
            self.check_ip(a.ip())?;
        }
        Ok(addrs)
    }
}

/// The resolver of the hub's HTTP client: [`Policy::resolve`], so the addresses connected to
/// are the ones checked.
#[derive(Clone)]
pub struct CheckedResolver {
    policy: Arc<Policy>,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (policy, timeout) = (Arc::clone(&self.policy), self.timeout);
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str(), timeout).await?;
            Ok(addrs.into_iter())
        })
    }
}

/// A connector that checks the target's scheme, port and address literal before connecting
/// (hyper-util's connector connects to an address literal without asking the resolver).
#[derive(Clone)]
pub struct Guarded<C> {
    policy: Arc<Policy>,
    inner: C,
}

impl<C> tower_service::Service<Uri> for Guarded<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let checked = url::Url::parse(&uri.to_string())
            .map_err(|_| Refused::Scheme)
            .and_then(|url| self.policy.check_url(&url));
        let call = self.inner.call(uri);
        Box::pin(async move {
            checked?;
            call.await.map_err(Into::into)
        })
    }
}

/// The connector of the hub's client: checked, HTTP or HTTPS (rustls, Mozilla's roots).
pub type Connector = Guarded<hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>>;

/// Makes the hub's connector; `connect_timeout` bounds resolving and connecting.
pub fn connector(policy: Arc<Policy>, connect_timeout: Duration) -> Result<Connector, String> {
    let mut http = HttpConnector::new_with_resolver(CheckedResolver {
        policy: Arc::clone(&policy),
        timeout: connect_timeout,
    });
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| e.to_string())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Guarded { policy, inner: tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &Policy, ip: &str) -> bool {
        policy.check_ip(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn special_v4_ranges_are_refused_by_default() {
        let p = Policy::default();
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert!(refused(&p, ip), "{ip} must be refused");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "223.255.255.255",
        ] {
            assert!(!refused(&p, ip), "{ip} is public");
        }
    }

    #[test]
    fn special_v6_ranges_are_refused_by_default() {
        let p = Policy::default();
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
        ] {
            assert!(refused(&p, ip), "{ip} must be refused");
        }
        for ip in ["2001:4860:4860::8888", "2a00:1450::1", "::ffff:8.8.8.8"] {
            assert!(!refused(&p, ip), "{ip} is public");
        }
    }

    #[test]
    fn an_allowed_network_lets_its_addresses_through_and_no_others() {
        let p = Policy {
            allow: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        assert!(!refused(&p, "127.0.0.1"));
        assert!(
            !refused(&p, "::ffff:127.0.0.1"),
            "mapped form of an allowed v4"
        );
        assert!(!refused(&p, "fd00::5"));
        assert!(refused(&p, "10.0.0.1"));
        assert!(refused(&p, "::1"), "IPv6 loopback is another network");
        assert!(refused(&p, "fc00::1"));
    }

    #[test]
    fn urls_are_checked_for_scheme_port_user_and_address() {
        let p = Policy::default();
        let check = |u: &str| p.check_url(&url::Url::parse(u).unwrap());
        assert_eq!(check("https://example.org/cb"), Ok(()));
        assert_eq!(check("http://example.org:8080/cb"), Ok(()));
        assert_eq!(check("ftp://example.org/cb"), Err(Refused::Scheme));
        assert_eq!(check("file:///etc/passwd"), Err(Refused::Scheme));
        assert_eq!(check("http://example.org:22/"), Err(Refused::Port(22)));
        assert_eq!(check("http://u:p@example.org/"), Err(Refused::UserInfo));
        assert!(matches!(
            check("http://127.0.0.1:8080/"),
            Err(Refused::Address(_, "loopback"))
        ));
        assert!(matches!(
            check("http://[::1]:8080/"),
            Err(Refused::Address(_, "loopback"))
        ));
        assert!(matches!(
            check("http://0x7f000001:8080/"),
            Err(Refused::Address(_, "loopback"))
        ));
    }

    /// The client's connector checks at connect time: a name resolving to loopback, and a
    /// loopback address literal, are refused unless allowed, even with a listener there.
    #[tokio::test]
    async fn the_connector_refuses_special_addresses_at_connect_time() {
        use tower_service::Service;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let timeout = Duration::from_secs(5);
        let mut refusing = connector(Arc::new(Policy::default()), timeout).unwrap();
        for target in [
            format!("http://localhost:{port}/"),
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
        ] {
            let uri: Uri = target.parse().unwrap();
            let e = match refusing.call(uri).await {
                Ok(_) => panic!("{target} was connected to"),
                Err(e) => e,
            };
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            assert!(text.contains("loopback"), "{target}: {text}");
        }
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let mut allowing = connector(
            Arc::new(Policy {
                allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            }),
            timeout,
        )
        .unwrap();
        assert!(allowing.call(uri).await.is_ok());
        let uri: Uri = format!("http://localhost:{port}/").parse().unwrap();
        assert!(allowing.call(uri).await.is_ok());
    }

    #[tokio::test]
    async fn a_name_is_judged_by_every_address_it_resolves_to() {
        let p = Policy::default();
        let r = p.resolve("localhost", Duration::from_secs(5)).await;
        assert!(matches!(r, Err(Refused::Address(_, "loopback"))), "{r:?}");
        let allowed = Policy {
            allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(
            allowed
                .resolve("localhost", Duration::from_secs(5))
                .await
                .is_ok()
        );
    }
}
