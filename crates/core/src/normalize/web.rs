//! URLs in the form a browser or web proxy would request them.
//!
//! Parsing follows the WHATWG URL standard (url crate), which is what browsers and most
//! proxies do, so `http://Example.COM:80/a/../b?x#frag` and `http://example.com/b?x` are one
//! indicator. Decisions:
//! - any scheme with a host is accepted (http, https, ftp, ws, wss, and others such as
//!   `tcp://` or `smb://`, whose host we normalize ourselves because WHATWG leaves it
//!   opaque); a URL without a host (`mailto:`, `file:///x`, `data:`) is not something a
//!   control blocks by URL and is refused;
//! - a value without `scheme://` is read as `http://`, as a browser does with a typed
//!   address (`evil.example.com/login.php`);
//! - the host must pass the same rules as a domain indicator (or be an IP address): a URL
//!   on `localhost` or a bare public suffix is refused. A numeric host is read the WHATWG
//!   way (`http://0x7f.1/` is `http://127.0.0.1/`), which is what the browser would fetch;
//! - scheme and host lowercase, default port, fragment and an empty `?` dropped, dot
//!   segments resolved; path, query and userinfo keep their case and percent-encoding
//!   (servers may treat them as case-sensitive, so folding them could miss a match).
//!
//! It must never return a URL whose host differs from the host a browser would contact.

use super::{domain, ip, shown, NormalizeError};
use url::{Host, Url};

fn bad(value: &str, reason: impl Into<String>) -> NormalizeError {
    NormalizeError::BadUrl { value: shown(value), reason: reason.into() }
}

/// Schemes whose host the WHATWG parser already normalizes (IDNA, IPv4 forms, lowercase).
fn is_special(scheme: &str) -> bool {
    matches!(scheme, "http" | "https" | "ftp" | "ws" | "wss" | "file")
}

/// Whether the value starts with `scheme:`; `evil.example.com:8080/x` does not (a port
/// follows the colon), `mailto:x@example.com` does, and must not be read as `http://mailto:…`.
fn has_scheme(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_shaped = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_shaped && !rest.starts_with(|c: char| c.is_ascii_digit())
}

pub(crate) fn normalize_url(value: &str) -> Result<String, NormalizeError> {
    let with_scheme;
    let text = if has_scheme(value) {
        value
    } else {
        with_scheme = format!("http://{value}");
        &with_scheme
    };
    let mut url = Url::parse(text).map_err(|e| bad(value, e.to_string()))?;
    let canonical_host = match url.host() {
        None => return Err(bad(value, "it has no host")),
        Some(Host::Ipv4(_)) | Some(Host::Ipv6(_)) => None,
        Some(Host::Domain("")) => return Err(bad(value, "it has no host")),
        Some(Host::Domain(host)) => {
            let canonical = canonical_domain_host(value, host, is_special(url.scheme()))?;
            (canonical != host).then_some(canonical)
        }
    };
    if let Some(host) = canonical_host {
        url.set_host(Some(&host)).map_err(|e| bad(value, format!("host {host:?}: {e}")))?;
    }
    url.set_fragment(None);
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url.into())
}

/// The host of a URL as a domain (or, for schemes the parser leaves opaque, possibly an
/// IP address written as text).
fn canonical_domain_host(value: &str, host: &str, special: bool) -> Result<String, NormalizeError> {
    if !special {
        if ip::looks_like_dotted_quad(host) {
            return ip::normalize_ipv4(host).map_err(|e| bad(value, e.to_string()));
        }
        if host.contains('%') {
            return Err(bad(value, "its host is percent-encoded"));
        }
    }
    match domain::normalize_domain(host) {
        Ok(name) => Ok(name),
        Err(NormalizeError::PublicSuffix(name)) => {
            Err(bad(value, format!("its host {name:?} is a public suffix, not a site one party controls")))
        }
        Err(NormalizeError::BadDomain { reason, .. }) => Err(bad(value, format!("host {:?}: {reason}", shown(host)))),
        Err(other) => Err(bad(value, other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalize_url(raw).unwrap_or_else(|e| panic!("{raw:?} refused: {e}"))
    }

    #[test]
    fn urls_get_their_canonical_form() {
        assert_eq!(ok("http://Example.COM:80/a?b=1#x"), "http://example.com/a?b=1");
        assert_eq!(ok("HTTPS://evil.example.com:443"), "https://evil.example.com/");
        assert_eq!(ok("https://evil.example.com:8443/x"), "https://evil.example.com:8443/x");
        assert_eq!(ok("http://evil.example.com./a/../b/./c?"), "http://evil.example.com/b/c");
        assert_eq!(ok("http://bücher.de/Pfad"), "http://xn--bcher-kva.de/Pfad");
        assert_eq!(ok("http://[2001:DB8::1]:8080/"), "http://[2001:db8::1]:8080/");
        assert_eq!(ok("http://1.2.3.4/x"), "http://1.2.3.4/x");
        assert_eq!(ok("http://user@evil.example.com/"), "http://user@evil.example.com/");
        assert_eq!(ok("evil.example.com/login.php"), "http://evil.example.com/login.php");
        assert_eq!(ok("evil.example.com:8080/x"), "http://evil.example.com:8080/x");
        assert_eq!(ok("http://evil.example.com/a b"), "http://evil.example.com/a%20b");
    }

    #[test]
    fn opaque_hosts_are_normalized_like_domains() {
        assert_eq!(ok("tcp://EVIL.Example.com:4444"), "tcp://evil.example.com:4444");
        assert_eq!(ok("smb://1.2.3.4/share"), "smb://1.2.3.4/share");
        assert!(normalize_url("tcp://010.1.1.1:80").is_err());
    }

    #[test]
    fn urls_without_a_usable_host_are_refused() {
        for raw in [
            "mailto:user@example.com",
            "file:///etc/passwd",
            "http://localhost/x",
            "http://co.uk/",
            "http://",
            "http://exa mple.com/",
        ] {
            let err = normalize_url(raw);
            assert!(matches!(err, Err(NormalizeError::BadUrl { .. })), "{raw:?} gave {err:?}");
        }
        let err = normalize_url("http://co.uk/").unwrap_err().to_string();
        assert!(err.contains("public suffix"), "{err}");
    }
}
