//! Webhook signing and callback-URL policy. Delivery itself lives in the worker.
//!
//! Every callback carries `Reelq-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//! HMAC-SHA256 over `"<t>.<body>"` with the configured secret. Receivers recompute it and reject
//! stale timestamps, which defeats replays.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Reelq-Signature";

/// Signs a body at a timestamp; returns the header value.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body)))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Checks a signature header against a body, rejecting timestamps further than `tolerance_secs`
/// from `now`. Comparison is constant-time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut ts = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => ts = v.parse::<i64>().ok(),
            Some(("v1", v)) => sig = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(ts), Some(sig)) = (ts, sig) else { return false };
    if (now - ts).abs() > tolerance_secs {
        return false;
    }
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&sig).is_ok()
}

/// Why a callback URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    /// Not an absolute http(s) URL with a host.
    #[error("callback_url must be an absolute http or https URL")]
    Malformed,
    /// The host name does not resolve.
    #[error("callback_url host does not resolve")]
    Unresolvable,
    /// It resolves to an address tenants may not reach.
    #[error("callback_url resolves to a loopback, private or link-local address ({0})")]
    Forbidden(IpAddr),
}

/// Whether an address is one a tenant must not make the service call: loopback, private,
/// link-local, unspecified, multicast, carrier-grade NAT, unique-local IPv6, or an IPv4-mapped
/// IPv6 form of any of those.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_ip(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Parses a callback URL and checks every address its host resolves to.
pub async fn check_callback_url(raw: &str, allow_private: bool) -> Result<url::Url, CallbackUrlError> {
    let url = url::Url::parse(raw).map_err(|_| CallbackUrlError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !url.username().is_empty() {
        return Err(CallbackUrlError::Malformed);
    }
    if allow_private {
        return Ok(url);
    }
    let host = url.host_str().ok_or(CallbackUrlError::Malformed)?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| CallbackUrlError::Unresolvable)?
            .map_err(|_| CallbackUrlError::Unresolvable)?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(CallbackUrlError::Unresolvable);
    }
    if let Some(bad) = addrs.into_iter().find(|ip| is_forbidden_ip(*ip)) {
        return Err(CallbackUrlError::Forbidden(bad));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let header = sign(b"secret-secret-secret", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(b"secret-secret-secret", &header, b"{\"a\":1}", 1_700_000_010, 300));
        assert!(!verify(b"secret-secret-secret", &header, b"{\"a\":2}", 1_700_000_010, 300));
        assert!(!verify(b"other-secret-secret", &header, b"{\"a\":1}", 1_700_000_010, 300));
        assert!(!verify(b"secret-secret-secret", &header, b"{\"a\":1}", 1_700_009_000, 300), "stale");
        assert!(!verify(b"secret-secret-secret", "garbage", b"{}", 0, 300));
    }

    #[test]
    fn internal_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_forbidden_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_forbidden_ip(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[tokio::test]
    async fn callback_urls_are_checked() {
        assert_eq!(check_callback_url("ftp://x", false).await, Err(CallbackUrlError::Malformed));
        assert!(matches!(check_callback_url("http://127.0.0.1:9/x", false).await, Err(CallbackUrlError::Forbidden(_))));
        assert!(matches!(check_callback_url("http://[::1]/x", false).await, Err(CallbackUrlError::Forbidden(_))));
        assert!(matches!(check_callback_url("http://localhost/x", false).await, Err(CallbackUrlError::Forbidden(_))));
        assert!(check_callback_url("http://127.0.0.1:9/x", true).await.is_ok());
        assert!(check_callback_url("https://93.184.216.34/hook", false).await.is_ok());
    }
}
