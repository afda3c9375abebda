//! Webhooks: a URL a caller gives to be told when its export or upload ends. The server calls it,
//! so a tenant must not be able to make the server reach its own network: a tenant's URL must
//! resolve to public addresses only, the address checked is the one called (no DNS rebinding),
//! and redirects are never followed.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use crate::ApiError;

/// A checked webhook, ready to be called.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: url::Url,
    /// The host and the address checked for it (none for an operator's URL).
    pinned: Option<(String, std::net::SocketAddr)>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message.into())
}

/// Whether a webhook may call `ip`: globally reachable unicast addresses only. Refused: every
/// range of IANA's special-purpose registries that is not globally reachable (loopback,
/// private, shared, link-local — the cloud metadata endpoint —, benchmarking, documentation,
/// reserved, multicast, broadcast, unspecified), and the IPv6 forms that carry an IPv4 address
/// or reach one through a translator (IPv4-mapped and -compatible, NAT64 `64:ff9b::/96` and
/// `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo `2001::/32`), which could lead to any of those.
fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 192 && b == 88 && c == 99)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embeds_v4 = v6.to_ipv4().is_some()
                || (s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1))
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0);
            !(embeds_v4
                || v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])
                || (s[0] == 0x2001 && s[1] < 0x0200))
        }
    }
}

impl Webhook {
    /// Checks a webhook URL: http(s), and — unless the caller is an operator — a host that
    /// resolves to public addresses only. The address checked is the one called later.
    pub async fn check(url: &str, operator: bool) -> Result<Self, ApiError> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| bad(format!("webhook_url {url:?} must be an http(s) URL")))?;
        if operator {
            return Ok(Self { url: parsed, pinned: None });
        }
        let host = parsed.host_str().ok_or_else(|| bad("webhook_url has no host"))?.to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let lookup = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((lookup.as_str(), port))
            .await
            .map_err(|e| bad(format!("webhook_url host {host:?} does not resolve: {e}")))?
            .collect();
        match addrs.first() {
            Some(first) if addrs.iter().all(|a| is_public(a.ip())) => {
                Ok(Self { url: parsed, pinned: Some((lookup, *first)) })
            }
            _ => Err(bad(format!(
                "webhook_url {url:?} resolves to a loopback, private or link-local address; webhooks call public \
                 addresses only (operators' tokens excepted)"
            ))),
        }
    }

    /// POSTs `body` (JSON) to the hook in the background: three tries, 10 s each.
    pub fn call(self, body: Value) {
        tokio::spawn(async move {
            // A redirect is never followed: its target was not checked, and a public host
            // answering `302 → http://169.254.169.254/` would reach the metadata endpoint.
            let mut client =
                reqwest::Client::builder().timeout(Duration::from_secs(10)).redirect(reqwest::redirect::Policy::none());
            // The address checked when the hook was given is the one called: a name that
            // resolves elsewhere by now (DNS rebinding) does not reach another host.
            if let Some((host, addr)) = &self.pinned {
                client = client.resolve(host, *addr);
            }
            let Ok(client) = client.build() else { return };
            let url = self.url;
            for attempt in 0..3u32 {
                match client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!(%url, status = %r.status(), "webhook refused"),
                    Err(e) => tracing::warn!(%url, error = %e, "webhook failed"),
                }
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_reach_public_addresses_only() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.8",
            "192.88.99.1",
            "fec0::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }
}
